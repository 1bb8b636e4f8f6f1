//! Transfers: a conversation and its context handed from one agent to another, as one
//! WAL record; idempotent by `transfer_id`.

use std::sync::Arc;

use agentstate_protocol::Durability;

use crate::model::{Current, Op, Transfer, TransferRequest};

use super::{not_found, now, ops, Engine, EngineError, EngineResult};

impl Engine {
    /// `POST /v1/transfers`: hands the conversation and context of one agent to another,
    /// atomically; the same `transfer_id` again returns the first result.
    pub async fn transfer(
        self: &Arc<Self>,
        req: TransferRequest,
        durability: Durability,
    ) -> EngineResult<Transfer> {
        ops::check_transfer_request(&req)?;
        if let Some(t) = self.existing_transfer(&req).await? {
            return Ok(t);
        }
        let engine = self.clone();
        self.critical(durability, async move {
            let transfer_key = format!("transfer:{}", req.transfer_id);
            let _g = engine
                .lock(&[&req.from_agent, &req.to_agent, &transfer_key])
                .await;
            // Again under the locks: a concurrent retry may have just done it.
            if let Some(t) = engine.existing_transfer(&req).await? {
                return Ok((t, None));
            }
            let source = engine.current_to_change(&req.from_agent).await?;
            let target = engine.current_to_change(&req.to_agent).await?;
            let Some(Current::Live(src)) = &source else {
                return Err(not_found(&req.from_agent));
            };
            let wanted = req
                .messages_max
                .unwrap_or(engine.opts.limits.transfer_messages_max)
                .min(engine.opts.limits.transfer_messages_max);
            let history = engine
                .recent_messages(&req.from_agent, src.message_seq, wanted)
                .await?;
            let built = ops::transfer(
                &engine.types,
                &req,
                source.as_ref(),
                target.as_ref(),
                history,
                now(),
            )?;
            let (op, lsn) = engine.log_built(built, durability).await?;
            let Op::Transfer { transfer, .. } = op else {
                unreachable!("transfer builds a Transfer")
            };
            Ok((transfer, Some(lsn)))
        })
        .await
    }

    /// The transfer with this id, if it happened; 409 if the id was used for others.
    async fn existing_transfer(&self, req: &TransferRequest) -> EngineResult<Option<Transfer>> {
        let found = match self.backlog.transfer(&req.transfer_id) {
            Some(t) => Some(t),
            None => self.store.transfer(&req.transfer_id).await?,
        };
        match found {
            Some(t) if t.from_agent != req.from_agent || t.to_agent != req.to_agent => {
                Err(EngineError::Conflict(format!(
                    "transfer {} was made from {} to {}, not from {} to {}",
                    t.transfer_id, t.from_agent, t.to_agent, req.from_agent, req.to_agent
                )))
            }
            other => Ok(other),
        }
    }

    /// `GET /v1/transfers/{id}`.
    pub async fn get_transfer(&self, transfer_id: &str) -> EngineResult<Transfer> {
        let found = match self.backlog.transfer(transfer_id) {
            Some(t) => Some(t),
            None => self.store.transfer(transfer_id).await?,
        };
        found.ok_or_else(|| EngineError::NotFound(format!("transfer {transfer_id} not found")))
    }
}
