//! Wire types, codecs and the async client for the agentstate sidecar.
//!
//! The sidecar (`agentstate serve`) speaks HTTP on localhost with MessagePack or JSON
//! bodies. This crate holds what both ends share, and never depends on the sidecar:
//!
//! - [`types`]: the data model (`PersistedState`, `StateTransition`, `Message`) and the
//!   request/response bodies of the HTTP API.
//! - [`error`]: the error body (`{"error": {"code", "message"}}`) and its codes.
//! - [`codec`]: MessagePack (maps with field names, so other languages can read them) and
//!   JSON, chosen by content type.
//! - `integral`: integers of request bodies as JSON Schema counts them (`3.0` is 3).
//! - `strict`: request fields read only in their described form (no variant indices,
//!   no `nil` for a map).
//! - [`threads`]: the bodies of the threads API (framework checkpoints: LangGraph's
//!   model), whose payloads are opaque bytes.
//! - [`persistence`]: the `StatePersistence` trait agents program against.
//! - [`validator`]: the `StateValidator` trait and its error.
//! - [`client`]: an async HTTP client that implements `StatePersistence`.
//! - [`agent`]: the `Agent` trait (persist, restore, validate, recover).

pub mod agent;
pub mod client;
pub mod codec;
pub mod error;
pub mod inspector;
mod integral;
pub mod persistence;
mod strict;
pub mod threads;
pub mod types;
pub mod validator;

pub use agent::{Agent, AgentError};
pub use client::{AgentsQuery, Client, ClientError};
pub use codec::{Codec, CodecError};
pub use error::{ErrorBody, ErrorCode, ErrorDetail};
pub use inspector::*;
pub use persistence::StatePersistence;
pub use threads::*;
pub use types::*;
pub use validator::{StateValidator, ValidationError, ValidationRule};
