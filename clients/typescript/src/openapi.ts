// Generated from sidecar/openapi.json by scripts/openapi-types.mjs: do not edit.
export interface paths {
    "/healthz": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Liveness: 200 while the process runs. */
        get: operations["healthz"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/readyz": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Readiness: 200 once the WAL is replayed and open and the backlog is under its bound. */
        get: operations["readyz"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/metrics": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Prometheus metrics (text exposition format). */
        get: operations["metrics"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/status": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** WAL, backlog, flush and cache figures. */
        get: operations["status"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/usage": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /**
         * What the backend holds: per table (collection) its rows and bytes, and the agents holding the most bytes.
         * @description Read from the backend on each call (SQLite's `dbstat`, MongoDB's `collStats` and `$bsonSize`); changes not yet flushed are not counted. The same per-table figures are the `agentstate_storage_*` gauges, refreshed every `--usage-interval-secs`.
         */
        get: operations["usage"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/openapi.json": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** This description. */
        get: operations["openapi"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/agents/{id}": {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description The agent. */
                id: components["parameters"]["AgentId"];
            };
            cookie?: never;
        };
        /** The agent's current state; `ETag` is its version. */
        get: operations["getAgent"];
        /**
         * Save the state.
         * @description `If-Match: "<version>"`: first writer wins; `If-None-Match: *`: create only; neither: last writer wins. A save is not a transition: it sets the state outright, checked against the agent type if declared.
         */
        put: operations["putAgent"];
        post?: never;
        /** Delete the agent with its log, conversation and checkpoints. */
        delete: operations["deleteAgent"];
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/agents/{id}/transitions": {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description The agent. */
                id: components["parameters"]["AgentId"];
            };
            cookie?: never;
        };
        /** The transition log, oldest first. */
        get: operations["listTransitions"];
        put?: never;
        /**
         * A transition: validated against the agent type, logged and applied atomically.
         * @description A refused transition is logged with `success: false` and answered 422.
         */
        post: operations["postTransition"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/agents/{id}/transitions/begin": {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description The agent. */
                id: components["parameters"]["AgentId"];
            };
            cookie?: never;
        };
        get?: never;
        put?: never;
        /**
         * Start a multi-step transition.
         * @description While it is pending, other transitions of the agent get 409 `conflict`.
         */
        post: operations["beginTransition"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/agents/{id}/transitions/{tid}/complete": {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description The agent. */
                id: components["parameters"]["AgentId"];
                /** @description The pending transition's `id`. */
                tid: components["parameters"]["TransitionId"];
            };
            cookie?: never;
        };
        get?: never;
        put?: never;
        /** Finish a pending transition. */
        post: operations["completeTransition"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/agents/{id}/transitions/{tid}/abort": {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description The agent. */
                id: components["parameters"]["AgentId"];
                /** @description The pending transition's `id`. */
                tid: components["parameters"]["TransitionId"];
            };
            cookie?: never;
        };
        get?: never;
        put?: never;
        /** Give a pending transition up; logged as failed. */
        post: operations["abortTransition"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/agents/{id}/messages": {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description The agent. */
                id: components["parameters"]["AgentId"];
            };
            cookie?: never;
        };
        /** The conversation, oldest first: a page after `after`, or the latest `last`. */
        get: operations["listMessages"];
        put?: never;
        /** Append to the conversation; each message gets the next `seq`. */
        post: operations["appendMessages"];
        /** Remove the whole conversation (the agent stays). */
        delete: operations["clearMessages"];
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/agents/{id}/messages/last": {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description The agent. */
                id: components["parameters"]["AgentId"];
            };
            cookie?: never;
        };
        get?: never;
        put?: never;
        post?: never;
        /** Remove the latest message. */
        delete: operations["popMessage"];
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/agents/{id}/checkpoints": {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description The agent. */
                id: components["parameters"]["AgentId"];
            };
            cookie?: never;
        };
        /** The agent's checkpoints, oldest first. */
        get: operations["listCheckpoints"];
        put?: never;
        /** Snapshot the state with the log and conversation positions. */
        post: operations["takeCheckpoint"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/agents/{id}/rollback": {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description The agent. */
                id: components["parameters"]["AgentId"];
            };
            cookie?: never;
        };
        get?: never;
        put?: never;
        /** Restore a checkpoint as a new version, logged with trigger `rollback`. */
        post: operations["rollback"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/agents/{id}/replay": {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description The agent. */
                id: components["parameters"]["AgentId"];
            };
            cookie?: never;
        };
        get?: never;
        put?: never;
        /** Recompute the state from a checkpoint and the log; a dry run unless `apply` (then logged with trigger `replay`). */
        post: operations["replay"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/transfers": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Transfers in order of id: all, or those from or to an agent (the lineage). */
        get: operations["listTransfers"];
        put?: never;
        /**
         * Hand the conversation and context to another agent, atomically.
         * @description The source moves on `trigger`; the latest `messages_max` messages are copied to the target, whose `conversation_context` becomes `{transfer_id, from_agent, context}`; with `to_agent_type` the target is created in its type's initial state; `to_trigger` moves the target too. The same `transfer_id` again returns the first result; reused for other agents it is 409 `conflict`.
         */
        post: operations["transfer"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/transfers/{id}": {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description The transfer. */
                id: components["parameters"]["TransferId"];
            };
            cookie?: never;
        };
        /** A transfer's record. */
        get: operations["getTransfer"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/batch": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /** Several operations, all or nothing (one WAL record). */
        post: operations["batch"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/threads/{id}": {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description The thread (an agent). */
                id: components["parameters"]["ThreadId"];
            };
            cookie?: never;
        };
        get?: never;
        put?: never;
        post?: never;
        /** Delete the thread's checkpoints and the agent (also when absent). */
        delete: operations["deleteThread"];
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/threads/{id}/checkpoints": {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description The thread (an agent). */
                id: components["parameters"]["ThreadId"];
            };
            cookie?: never;
        };
        get?: never;
        put?: never;
        /** Store a framework checkpoint (the first creates the thread in state `active`). */
        post: operations["putThreadCheckpoint"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/threads/{id}/writes": {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description The thread (an agent). */
                id: components["parameters"]["ThreadId"];
            };
            cookie?: never;
        };
        get?: never;
        put?: never;
        /**
         * Store writes a task made against a checkpoint.
         * @description Kept per (checkpoint, task, idx): at `idx >= 0` the first wins, below 0 the last.
         */
        post: operations["putThreadWrites"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/threads/{id}/checkpoint": {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description The thread (an agent). */
                id: components["parameters"]["ThreadId"];
            };
            cookie?: never;
        };
        /** One checkpoint with its blobs and writes. */
        get: operations["getThreadCheckpoint"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/threads/{id}/copy": {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description The thread (an agent). */
                id: components["parameters"]["ThreadId"];
            };
            cookie?: never;
        };
        get?: never;
        put?: never;
        /** Copy every checkpoint of the thread to another. */
        post: operations["copyThread"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/threads/{id}/delta_history": {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description The thread (an agent). */
                id: components["parameters"]["ThreadId"];
            };
            cookie?: never;
        };
        get?: never;
        put?: never;
        /** Per channel, the writes along a checkpoint's ancestors since the nearest stored value. */
        post: operations["deltaHistory"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/checkpoints/search": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /** Checkpoints by thread, namespace, id and metadata, greatest id first. */
        post: operations["searchCheckpoints"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/checkpoints/prune": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /** Keep the latest checkpoint per namespace, or delete all, of the listed threads. */
        post: operations["pruneCheckpoints"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/checkpoints/delete_for_runs": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        get?: never;
        put?: never;
        /** Delete the checkpoints whose `metadata.run_id` is listed, in any thread. */
        post: operations["deleteForRuns"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/agents": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /**
         * Agents, in order of id, with filters.
         * @description Unflushed changes included. Unknown parameters are refused (400), so a misspelt filter is not silently ignored.
         */
        get: operations["listAgents"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/threads": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** Threads with framework checkpoints, in order of id. */
        get: operations["listThreads"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/agents/{id}/timeline": {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description The agent. */
                id: components["parameters"]["AgentId"];
            };
            cookie?: never;
        };
        /** Everything that happened to an agent in time order, oldest first: transitions (refused, aborted, rollbacks and replays among them), messages, checkpoints, transfers in and out. */
        get: operations["timeline"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/threads/{id}/history": {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description The thread (an agent). */
                id: components["parameters"]["ThreadId"];
            };
            cookie?: never;
        };
        /** A thread's checkpoints in a namespace without their values, greatest id first: parents and forks make the tree. */
        get: operations["threadHistory"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/threads/{id}/view": {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description The thread (an agent). */
                id: components["parameters"]["ThreadId"];
            };
            cookie?: never;
        };
        /** One checkpoint of a thread (the latest without an id), its channel values and pending writes decoded for reading. */
        get: operations["threadView"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/inspector": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** What the web inspector may do here. */
        get: operations["inspectorInfo"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/ui": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** The web inspector (served without the token, which the page asks for). */
        get: operations["inspectorPage"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/ui/app.js": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** The inspector's script. */
        get: operations["inspectorScript"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/ui/app.css": {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        /** The inspector's style sheet. */
        get: operations["inspectorStyle"];
        put?: never;
        post?: never;
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/inspector/agents/{id}/rollback": {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description The agent. */
                id: components["parameters"]["AgentId"];
            };
            cookie?: never;
        };
        get?: never;
        put?: never;
        /**
         * Roll an agent back to a checkpoint, with the operator's reason in the log.
         * @description Off unless the sidecar was started with `--ui-writes` (403 `ui_writes_disabled`). Logged at `local` durability.
         */
        post: operations["inspectorRollback"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/inspector/agents/{id}/transitions/{tid}/abort": {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description The agent. */
                id: components["parameters"]["AgentId"];
                /** @description The pending transition's `id`. */
                tid: components["parameters"]["TransitionId"];
            };
            cookie?: never;
        };
        get?: never;
        put?: never;
        /**
         * Abort an agent's pending transition, with the operator's reason in the log.
         * @description Off unless the sidecar was started with `--ui-writes` (403 `ui_writes_disabled`). Logged at `local` durability.
         */
        post: operations["inspectorAbort"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
    "/v1/inspector/threads/{id}/fork": {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description The thread (an agent). */
                id: components["parameters"]["ThreadId"];
            };
            cookie?: never;
        };
        get?: never;
        put?: never;
        /**
         * Fork a thread from a checkpoint: a new latest checkpoint, a child of it with its values (metadata `source: fork`, `forked_from`, `fork_reason`), so the framework goes on from there.
         * @description Off unless the sidecar was started with `--ui-writes` (403 `ui_writes_disabled`). Logged at `local` durability.
         */
        post: operations["inspectorFork"];
        delete?: never;
        options?: never;
        head?: never;
        patch?: never;
        trace?: never;
    };
}
export type webhooks = Record<string, never>;
export interface components {
    schemas: {
        /** @description Agent, thread and transfer ids: 1 to 128 of `A-Z a-z 0-9 - _ . :`. */
        AgentId: string;
        /** @description State names, triggers, agent types, roles, labels, channel names and versions, checkpoint and task ids: 1 to 256 characters, none of them a control character. */
        Name: string;
        /** @description A checkpoint namespace: `""` (the root) or up to 1024 characters, none of them a control character. */
        Namespace: string;
        /** @description A number; integers from 2^63 to 2^64 - 1 are refused (BSON stores 64-bit signed integers). */
        Number: number;
        /** @description Any value the backend can store as BSON: nested at most 64 deep, object keys without a leading `$` and without NUL. */
        Document: unknown;
        /** @description A map of documents (keys without a leading `$` and without NUL). */
        Metadata: {
            [key: string]: components["schemas"]["Document"];
        };
        /** @description The agent's version: 1 at creation, one more with every change; its `ETag`. */
        Version: number;
        /** @description An agent's current state. */
        PersistedState: {
            agent_id: components["schemas"]["AgentId"];
            /** @description Absent for untyped agents. */
            agent_type?: string;
            state_name: string;
            state_data: components["schemas"]["Document"];
            /** @description Set by transfers: `{transfer_id, from_agent, context}`. */
            conversation_context: components["schemas"]["Document"];
            /** Format: date-time */
            created_at: string;
            /** Format: date-time */
            updated_at: string;
            version: components["schemas"]["Version"];
            metadata: components["schemas"]["Metadata"];
            pending_transition?: components["schemas"]["PendingTransition"];
        };
        /** @description A multi-step transition begun and neither completed nor aborted. */
        PendingTransition: {
            id: string;
            from_state: string;
            to_state: string;
            trigger: string;
            /** Format: date-time */
            started_at: string;
            state_data?: components["schemas"]["Document"];
        };
        /** @description One entry of an agent's transition log. */
        StateTransition: {
            id: string;
            /** @description Position in the agent's log; the paging key (`after`). */
            seq: number;
            agent_id: components["schemas"]["AgentId"];
            from_state: string;
            to_state: string;
            trigger: string;
            /** Format: date-time */
            timestamp: string;
            success: boolean;
            error?: string;
            /** @description The `state_data` the transition set (replay re-applies it), or the data a refused one brought. */
            state_data?: components["schemas"]["Document"];
            /** @description Why an operator made it (a rollback or abort from the inspector). */
            reason?: string;
        };
        /** @description One message of an agent's conversation. */
        Message: {
            seq: number;
            role: string;
            content: string;
            /** Format: date-time */
            timestamp: string;
            metadata: components["schemas"]["Metadata"];
        };
        /** @description Body of `PUT /v1/agents/{id}`. */
        SaveStateRequest: {
            agent_type?: components["schemas"]["Name"] | null;
            state_name: components["schemas"]["Name"];
            state_data?: components["schemas"]["Document"];
            metadata?: components["schemas"]["Metadata"] | null;
        };
        VersionResponse: {
            version: components["schemas"]["Version"];
        };
        TransitionRequest: {
            to_state: components["schemas"]["Name"];
            trigger: components["schemas"]["Name"];
            /** @description Replaces the agent's `state_data` on success; kept when absent or null. */
            state_data?: components["schemas"]["Document"];
        };
        TransitionResponse: {
            transition: components["schemas"]["StateTransition"];
            version: components["schemas"]["Version"];
        };
        TransitionsPage: {
            transitions: components["schemas"]["StateTransition"][];
        };
        BeginTransitionResponse: {
            pending_transition: components["schemas"]["PendingTransition"];
            version: components["schemas"]["Version"];
        };
        /** @description Body of `complete` (optional): the data to set, else the data given to `begin`. */
        CompleteTransitionRequest: {
            state_data?: components["schemas"]["Document"];
        };
        /** @description Body of `abort` (optional). */
        AbortTransitionRequest: {
            error?: string | null;
        };
        NewMessage: {
            role: components["schemas"]["Name"];
            /** @description At most `--message-bytes-max` bytes (65536 by default). */
            content: string;
            metadata?: components["schemas"]["Metadata"];
        };
        AppendMessagesRequest: {
            /** @description 1 to `--messages-per-request-max` (100 by default). */
            messages: components["schemas"]["NewMessage"][];
        };
        AppendMessagesResponse: {
            seqs: number[];
            version: components["schemas"]["Version"];
        };
        MessagesPage: {
            messages: components["schemas"]["Message"][];
        };
        /** @description `message` is null when the conversation was empty. */
        PopMessageResponse: {
            message: components["schemas"]["Message"] | null;
            version: components["schemas"]["Version"];
        };
        /** @description A snapshot of an agent to roll back or replay from. */
        Checkpoint: {
            checkpoint_id: string;
            agent_id: components["schemas"]["AgentId"];
            version: components["schemas"]["Version"];
            state: components["schemas"]["PersistedState"];
            transition_seq: number;
            message_seq: number;
            /** Format: date-time */
            created_at: string;
            label?: string;
        };
        CheckpointRequest: {
            label?: components["schemas"]["Name"] | null;
        };
        CheckpointResponse: {
            checkpoint_id: string;
            version: components["schemas"]["Version"];
        };
        CheckpointsPage: {
            checkpoints: components["schemas"]["Checkpoint"][];
        };
        RollbackRequest: {
            checkpoint_id: string;
        };
        ReplayRequest: {
            checkpoint_id: string;
            /**
             * @description Make the result current; otherwise a dry run.
             * @default false
             */
            apply: boolean;
        };
        ReplayResponse: {
            state: components["schemas"]["PersistedState"];
            transitions_applied: number;
            applied: boolean;
            version: components["schemas"]["Version"];
        };
        TransferRequest: {
            transfer_id: components["schemas"]["AgentId"];
            from_agent: components["schemas"]["AgentId"];
            /** @description Must differ from `from_agent`. */
            to_agent: components["schemas"]["AgentId"];
            trigger: components["schemas"]["Name"];
            to_trigger?: components["schemas"]["Name"] | null;
            to_agent_type?: components["schemas"]["Name"] | null;
            context?: components["schemas"]["Document"];
            messages_max?: number | null;
        };
        /** @description A transfer's record. */
        Transfer: {
            transfer_id: components["schemas"]["AgentId"];
            from_agent: components["schemas"]["AgentId"];
            to_agent: components["schemas"]["AgentId"];
            trigger: string;
            to_trigger?: string;
            context: components["schemas"]["Document"];
            messages_copied: number;
            from_version: components["schemas"]["Version"];
            to_version: components["schemas"]["Version"];
            /** Format: date-time */
            created_at: string;
        };
        IfMatchVersion: number | null;
        /** @description One operation of a batch, by `op`. */
        BatchOperation: {
            /** @constant */
            op: "put";
            agent_id: components["schemas"]["AgentId"];
            if_match?: components["schemas"]["IfMatchVersion"];
            agent_type?: components["schemas"]["Name"] | null;
            state_name: components["schemas"]["Name"];
            state_data?: components["schemas"]["Document"];
            metadata?: components["schemas"]["Metadata"] | null;
        } | {
            /** @constant */
            op: "delete";
            agent_id: components["schemas"]["AgentId"];
            if_match?: components["schemas"]["IfMatchVersion"];
        } | {
            /** @constant */
            op: "transition";
            agent_id: components["schemas"]["AgentId"];
            if_match?: components["schemas"]["IfMatchVersion"];
            to_state: components["schemas"]["Name"];
            trigger: components["schemas"]["Name"];
            state_data?: components["schemas"]["Document"];
        } | {
            /** @constant */
            op: "messages";
            agent_id: components["schemas"]["AgentId"];
            if_match?: components["schemas"]["IfMatchVersion"];
            messages: components["schemas"]["NewMessage"][];
        };
        BatchRequest: {
            /** @description 1 to `--batch-operations-max` (100 by default). */
            operations: components["schemas"]["BatchOperation"][];
        };
        /** @description Per operation, in order: the agent and its version after it. */
        BatchResponse: {
            results: {
                agent_id: components["schemas"]["AgentId"];
                version: components["schemas"]["Version"];
            }[];
        };
        StatusResponse: {
            ready: boolean;
            /** @enum {string} */
            backend: "mongodb" | "sqlite";
            backend_reachable: boolean;
            wal_segments: number;
            wal_bytes: number;
            wal_last_lsn: number;
            flushed_lsn: number;
            backlog_agents: number;
            backlog_bytes: number;
            backlog_bytes_max: number;
            backlog_oldest_age_ms: number;
            /** Format: date-time */
            last_flush_at?: string;
            last_flush_error?: string;
            cache_entries: number;
            /** @description Bytes of agent states held in the cache. */
            cache_bytes?: number;
            /** @description Ownership leases this sidecar holds (MongoDB; 0 on the embedded store). */
            leases_held?: number;
        };
        UsageResponse: {
            /** @description `mongodb` or `sqlite`. */
            backend: string;
            tables: components["schemas"]["TableUsage"][];
            /** @description The agents (and threads) holding the most bytes, most first. */
            largest: components["schemas"]["AgentUsage"][];
        };
        TableUsage: {
            name: string;
            /** @description Rows, or documents. */
            rows: number;
            /** @description The bytes of the rows themselves (SQLite: their payload; MongoDB: `size`). */
            data_bytes: number;
            /** @description The bytes the table takes on disk, free space in its pages included. */
            storage_bytes: number;
            /** @description The bytes its indexes take. */
            index_bytes: number;
        };
        AgentUsage: {
            agent_id: components["schemas"]["AgentId"];
            /** @description Bytes of its rows in every table (SQLite: every column's length; MongoDB: the documents' BSON size). */
            bytes: number;
        };
        /** @enum {string} */
        ErrorCode: "malformed" | "unauthorized" | "host_not_allowed" | "cross_origin" | "ui_writes_disabled" | "not_found" | "method_not_allowed" | "version_conflict" | "conflict" | "too_large" | "unsupported_media_type" | "validation_failed" | "unavailable" | "internal";
        /** @description Every error: the status follows from `code`. */
        ErrorBody: {
            error: {
                code: components["schemas"]["ErrorCode"];
                message: string;
                /** @description The agent's version, on `version_conflict`. */
                current_version?: number;
            } & {
                [key: string]: unknown;
            };
        };
        /** @description Opaque bytes: base64 (standard alphabet, padded) in JSON, `bin` in MessagePack (where a base64 string is accepted too). */
        Bytes: string;
        /** @description A value as the framework serialised it: its type tag and bytes. */
        Typed: {
            type: components["schemas"]["Name"];
            data: components["schemas"]["Bytes"];
        };
        ThreadBlob: {
            channel: components["schemas"]["Name"];
            version: components["schemas"]["Name"];
            value: components["schemas"]["Typed"];
            /** @description Only in puts: this blob is a delta. It extends the value of the same channel at this version (held by the thread in the namespace); `value` is then of type `msgpack`, a MessagePack array of the items added after the base's, and the value it stands for is the base's array followed by them. A delta the sidecar cannot apply is refused with 409 `conflict`, and nothing is stored: its base is not held by the thread or is not an older version (versions only grow along a chain), the chain under it is too long, it is not a MessagePack array, or its checkpoint has no parent. The client then sends the whole value. Reads always answer whole values, without `extends`. */
            extends?: components["schemas"]["Name"] | null;
        };
        ThreadWrite: {
            task_id: string;
            task_path: string;
            idx: number;
            channel: string;
            value: components["schemas"]["Typed"];
        };
        PutThreadCheckpointRequest: {
            checkpoint_ns?: components["schemas"]["Namespace"];
            checkpoint_id: components["schemas"]["Name"];
            parent_checkpoint_id?: components["schemas"]["Name"] | null;
            checkpoint: components["schemas"]["Typed"];
            metadata?: components["schemas"]["Metadata"];
            /** @description Every channel's version in this checkpoint. */
            channel_versions?: {
                [key: string]: components["schemas"]["Name"];
            };
            /** @description Blobs of the channels that changed. */
            blobs?: components["schemas"]["ThreadBlob"][];
        };
        PutThreadCheckpointResponse: {
            thread_id: components["schemas"]["AgentId"];
            checkpoint_ns: string;
            checkpoint_id: string;
            version: components["schemas"]["Version"];
        };
        NewThreadWrite: {
            idx: number;
            channel: components["schemas"]["Name"];
            value: components["schemas"]["Typed"];
        };
        PutThreadWritesRequest: {
            checkpoint_ns?: components["schemas"]["Namespace"];
            checkpoint_id: components["schemas"]["Name"];
            task_id: components["schemas"]["Name"];
            task_path?: components["schemas"]["Namespace"];
            writes: components["schemas"]["NewThreadWrite"][];
        };
        /** @description A checkpoint with its channel blobs and pending writes. */
        ThreadCheckpointTuple: {
            thread_id: components["schemas"]["AgentId"];
            checkpoint_ns: string;
            checkpoint_id: string;
            parent_checkpoint_id: string | null;
            checkpoint: components["schemas"]["Typed"];
            metadata: components["schemas"]["Metadata"];
            channel_versions: {
                [key: string]: string;
            };
            blobs: components["schemas"]["ThreadBlob"][];
            /** @description Sorted by `(task_path, task_id, idx)`. */
            writes: components["schemas"]["ThreadWrite"][];
        };
        SearchCheckpointsRequest: {
            thread_id?: components["schemas"]["AgentId"] | null;
            checkpoint_ns?: components["schemas"]["Namespace"] | null;
            checkpoint_id?: string | null;
            /** @description Only checkpoints whose id sorts before this one. */
            before?: string | null;
            filter?: components["schemas"]["Metadata"] | null;
            limit?: number | null;
        };
        ThreadCheckpointsPage: {
            checkpoints: components["schemas"]["ThreadCheckpointTuple"][];
        };
        CopyThreadRequest: {
            /** @description Must differ from the thread copied. */
            target_thread_id: components["schemas"]["AgentId"];
        };
        CopyThreadResponse: {
            checkpoints_copied: number;
        };
        PruneRequest: {
            thread_ids: components["schemas"]["AgentId"][];
            /** @enum {string} */
            strategy: "keep_latest" | "delete";
        };
        DeleteForRunsRequest: {
            run_ids: string[];
        };
        CheckpointsDeletedResponse: {
            checkpoints_deleted: number;
        };
        DeltaHistoryRequest: {
            checkpoint_ns?: components["schemas"]["Namespace"];
            /** @description Absent or null: the namespace's latest. */
            checkpoint_id?: string | null;
            channels: components["schemas"]["Name"][];
        };
        ChannelHistory: {
            writes: components["schemas"]["ThreadWrite"][];
            seed: components["schemas"]["Typed"] | null;
        };
        DeltaHistoryResponse: {
            channels: {
                [key: string]: components["schemas"]["ChannelHistory"];
            };
        };
        /** @description One row of `GET /v1/agents`. */
        AgentSummary: {
            agent_id: components["schemas"]["AgentId"];
            agent_type?: string;
            state_name: string;
            version: components["schemas"]["Version"];
            /** Format: date-time */
            created_at: string;
            /** Format: date-time */
            updated_at: string;
            /** @description A multi-step transition is begun and neither completed nor aborted. */
            pending: boolean;
        };
        AgentsPage: {
            agents: components["schemas"]["AgentSummary"][];
            /** @description Where the next page starts (pass as `cursor`); absent on the last page. A page may hold fewer than `limit` entries and still have one. */
            next_cursor?: string;
        };
        /** @description One row of `GET /v1/threads`. */
        ThreadSummary: {
            thread_id: components["schemas"]["AgentId"];
            /** @description Checkpoints of every namespace. */
            checkpoints: number;
            /** @description The greatest checkpoint id (the latest, for LangGraph's time-ordered ids). */
            latest_checkpoint_id: string;
        };
        ThreadsPage: {
            threads: components["schemas"]["ThreadSummary"][];
            /** @description Where the next page starts (pass as `cursor`); absent on the last page. A page may hold fewer than `limit` entries and still have one. */
            next_cursor?: string;
        };
        TransfersPage: {
            transfers: components["schemas"]["Transfer"][];
            /** @description Where the next page starts (pass as `cursor`); absent on the last page. A page may hold fewer than `limit` entries and still have one. */
            next_cursor?: string;
        };
        /** @description One thing that happened to an agent; exactly the field `kind` names is present. A transition with `success: false` was refused (its `error` names the rule) or aborted; triggers `rollback` and `replay` are rollbacks and replays. */
        TimelineEntry: {
            /** @enum {string} */
            kind: "transition" | "message" | "checkpoint" | "transfer";
            /** Format: date-time */
            at: string;
            transition?: components["schemas"]["StateTransition"];
            message?: components["schemas"]["Message"];
            checkpoint?: components["schemas"]["Checkpoint"];
            transfer?: components["schemas"]["Transfer"];
        };
        TimelinePage: {
            entries: components["schemas"]["TimelineEntry"][];
            /** @description Where the next page starts (pass as `cursor`); absent on the last page. A page may hold fewer than `limit` entries and still have one. */
            next_cursor?: string;
        };
        ThreadCheckpointSummary: {
            checkpoint_ns: components["schemas"]["Namespace"];
            checkpoint_id: string;
            parent_checkpoint_id: string | null;
            metadata: components["schemas"]["Metadata"];
        };
        ThreadHistoryPage: {
            checkpoints: components["schemas"]["ThreadCheckpointSummary"][];
            /** @description Where the next page starts (pass as `cursor`); absent on the last page. A page may hold fewer than `limit` entries and still have one. */
            next_cursor?: string;
        };
        /** @description A serialized value for reading: decoded where the serializer is known (`json`, LangGraph's `msgpack`, whose objects show as maps naming their class under `$type`; `null`, `empty`), else its size and first bytes in hex. */
        RenderedValue: {
            type: string;
            decoded: boolean;
            /** @description The value, when decoded. */
            value?: unknown;
            bytes: number;
            /** @description The first bytes, when not decoded. */
            hex?: string;
        };
        ChannelView: {
            version: string;
            value: components["schemas"]["RenderedValue"];
        };
        WriteView: {
            task_id: string;
            task_path: string;
            idx: number;
            channel: string;
            value: components["schemas"]["RenderedValue"];
        };
        ThreadView: {
            thread_id: components["schemas"]["AgentId"];
            checkpoint_ns: components["schemas"]["Namespace"];
            checkpoint_id: string;
            parent_checkpoint_id: string | null;
            metadata: components["schemas"]["Metadata"];
            checkpoint: components["schemas"]["RenderedValue"];
            channels: {
                [key: string]: components["schemas"]["ChannelView"];
            };
            writes: components["schemas"]["WriteView"][];
        };
        InspectorInfo: {
            /** @description Rollback, abort and fork are allowed (`--ui-writes`). */
            ui_writes: boolean;
            version: string;
        };
        InspectorRollbackRequest: {
            checkpoint_id: string;
            /** @description Why, as the operator typed it; kept in the log (the transition's `reason`, the fork's metadata). Not blank. */
            reason: string;
        };
        InspectorAbortRequest: {
            /** @description Why, as the operator typed it; kept in the log (the transition's `reason`, the fork's metadata). Not blank. */
            reason: string;
        };
        InspectorForkRequest: {
            checkpoint_ns?: components["schemas"]["Namespace"];
            checkpoint_id: components["schemas"]["Name"];
            /** @description Why, as the operator typed it; kept in the log (the transition's `reason`, the fork's metadata). Not blank. */
            reason: string;
        };
    };
    responses: {
        /** @description The request cannot be parsed: a bad id, body, query parameter or header. */
        Malformed: {
            headers: {
                [name: string]: unknown;
            };
            content: {
                "application/json": components["schemas"]["ErrorBody"] & {
                    error?: {
                        /** @constant */
                        code?: "malformed";
                    };
                };
                "application/msgpack": components["schemas"]["ErrorBody"] & {
                    error?: {
                        /** @constant */
                        code?: "malformed";
                    };
                };
            };
        };
        /** @description A bearer token is required (`--auth-token-file`) and was missing or wrong. */
        Unauthorized: {
            headers: {
                "WWW-Authenticate": "Bearer";
                [name: string]: unknown;
            };
            content: {
                "application/json": components["schemas"]["ErrorBody"] & {
                    error?: {
                        /** @constant */
                        code?: "unauthorized";
                    };
                };
                "application/msgpack": components["schemas"]["ErrorBody"] & {
                    error?: {
                        /** @constant */
                        code?: "unauthorized";
                    };
                };
            };
        };
        /** @description No such agent, thread, transfer, checkpoint or pending transition. */
        NotFound: {
            headers: {
                [name: string]: unknown;
            };
            content: {
                "application/json": components["schemas"]["ErrorBody"] & {
                    error?: {
                        /** @constant */
                        code?: "not_found";
                    };
                };
                "application/msgpack": components["schemas"]["ErrorBody"] & {
                    error?: {
                        /** @constant */
                        code?: "not_found";
                    };
                };
            };
        };
        /** @description `version_conflict`: the `If-Match` version (or `If-None-Match: *`) did not hold, `current_version` is the agent's; `conflict`: a pending multi-step transition, a transfer id reused for other agents, the agent is held by another sidecar (MongoDB lease), or, for a `remote` write, another sidecar took the agent over before the write reached the backend (the write is kept in `agent_state_conflicts`, not in the agent's state). */
        Conflict: {
            headers: {
                [name: string]: unknown;
            };
            content: {
                "application/json": components["schemas"]["ErrorBody"] & {
                    error?: {
                        /** @enum {unknown} */
                        code?: "version_conflict" | "conflict";
                    };
                };
                "application/msgpack": components["schemas"]["ErrorBody"] & {
                    error?: {
                        /** @enum {unknown} */
                        code?: "version_conflict" | "conflict";
                    };
                };
            };
        };
        /** @description The body exceeds `--body-bytes-max`. */
        TooLarge: {
            headers: {
                [name: string]: unknown;
            };
            content: {
                "application/json": components["schemas"]["ErrorBody"] & {
                    error?: {
                        /** @constant */
                        code?: "too_large";
                    };
                };
                "application/msgpack": components["schemas"]["ErrorBody"] & {
                    error?: {
                        /** @constant */
                        code?: "too_large";
                    };
                };
            };
        };
        /** @description `Content-Type` is neither JSON nor MessagePack. */
        UnsupportedMediaType: {
            headers: {
                [name: string]: unknown;
            };
            content: {
                "application/json": components["schemas"]["ErrorBody"] & {
                    error?: {
                        /** @constant */
                        code?: "unsupported_media_type";
                    };
                };
                "application/msgpack": components["schemas"]["ErrorBody"] & {
                    error?: {
                        /** @constant */
                        code?: "unsupported_media_type";
                    };
                };
            };
        };
        /** @description Refused by a rule: the message names it (`unknown_agent_type`, `unknown_state`, `transition_not_allowed`, `schema_mismatch`) or the limit exceeded. */
        ValidationFailed: {
            headers: {
                [name: string]: unknown;
            };
            content: {
                "application/json": components["schemas"]["ErrorBody"] & {
                    error?: {
                        /** @constant */
                        code?: "validation_failed";
                    };
                };
                "application/msgpack": components["schemas"]["ErrorBody"] & {
                    error?: {
                        /** @constant */
                        code?: "validation_failed";
                    };
                };
            };
        };
        /** @description A bug or a backend that refused a write; logged. */
        Internal: {
            headers: {
                [name: string]: unknown;
            };
            content: {
                "application/json": components["schemas"]["ErrorBody"] & {
                    error?: {
                        /** @constant */
                        code?: "internal";
                    };
                };
                "application/msgpack": components["schemas"]["ErrorBody"] & {
                    error?: {
                        /** @constant */
                        code?: "internal";
                    };
                };
            };
        };
        /** @description Starting up (WAL replay), the backlog is full, the backend is unreachable, or a `remote` write timed out. Retry after `Retry-After` seconds. */
        Unavailable: {
            headers: {
                "Retry-After": number;
                [name: string]: unknown;
            };
            content: {
                "application/json": components["schemas"]["ErrorBody"] & {
                    error?: {
                        /** @constant */
                        code?: "unavailable";
                    };
                };
                "application/msgpack": components["schemas"]["ErrorBody"] & {
                    error?: {
                        /** @constant */
                        code?: "unavailable";
                    };
                };
            };
        };
        /** @description On TCP: the request's `Host` is not a name of this sidecar (see the description above). */
        HostNotAllowed: {
            headers: {
                [name: string]: unknown;
            };
            content: {
                "application/json": components["schemas"]["ErrorBody"] & {
                    error?: {
                        /** @constant */
                        code?: "host_not_allowed";
                    };
                };
                "application/msgpack": components["schemas"]["ErrorBody"] & {
                    error?: {
                        /** @constant */
                        code?: "host_not_allowed";
                    };
                };
            };
        };
        /** @description On TCP: the request's `Host` is not a name of this sidecar, or a browser sent this write from another site or origin (see the description above). */
        Forbidden: {
            headers: {
                [name: string]: unknown;
            };
            content: {
                "application/json": components["schemas"]["ErrorBody"] & {
                    error?: {
                        /** @enum {unknown} */
                        code?: "host_not_allowed" | "cross_origin";
                    };
                };
                "application/msgpack": components["schemas"]["ErrorBody"] & {
                    error?: {
                        /** @enum {unknown} */
                        code?: "host_not_allowed" | "cross_origin";
                    };
                };
            };
        };
        /** @description On TCP: the request's `Host` is not a name of this sidecar, or a browser sent this write from another site or origin; or the sidecar was started without `--ui-writes` (`ui_writes_disabled`). */
        InspectorForbidden: {
            headers: {
                [name: string]: unknown;
            };
            content: {
                "application/json": components["schemas"]["ErrorBody"] & {
                    error?: {
                        /** @enum {unknown} */
                        code?: "host_not_allowed" | "cross_origin" | "ui_writes_disabled";
                    };
                };
                "application/msgpack": components["schemas"]["ErrorBody"] & {
                    error?: {
                        /** @enum {unknown} */
                        code?: "host_not_allowed" | "cross_origin" | "ui_writes_disabled";
                    };
                };
            };
        };
    };
    parameters: {
        /** @description The agent. */
        AgentId: components["schemas"]["AgentId"];
        /** @description The thread (an agent). */
        ThreadId: components["schemas"]["AgentId"];
        /** @description The transfer. */
        TransferId: components["schemas"]["AgentId"];
        /** @description The pending transition's `id`. */
        TransitionId: string;
        /** @description Only if the agent's version is this one (`"3"` or `3`); otherwise 409 `version_conflict`. Wins over `If-None-Match`. */
        IfMatch: string;
        /** @description `*`: only if the agent does not exist; otherwise 409 `version_conflict`. */
        IfNoneMatch: "*";
        /** @description When the write is acknowledged: `local` (default) after the WAL's fsync, `remote` once the backend has it, `memory` before the fsync. Wins over the `Agentstate-Durability` header. */
        Durability: "local" | "remote" | "memory";
        /** @description As the `durability` query parameter. */
        DurabilityHeader: "local" | "remote" | "memory";
        /** @description Entries after this `seq` (default 0: from the start). */
        After: number;
        /** @description Page size (default 100). */
        Limit: number;
        /** @description The latest N messages instead of a page (`after` and `limit` are then ignored). */
        Last: number;
        /** @description The namespace (default: the root, `""`). */
        CheckpointNs: components["schemas"]["Namespace"];
        /** @description The checkpoint; absent or empty: the namespace's latest. */
        CheckpointId: string;
    };
    requestBodies: never;
    headers: never;
    pathItems: never;
}
export type $defs = Record<string, never>;
export interface operations {
    healthz: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Alive. */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "text/plain": "ok\n";
                };
            };
            403: components["responses"]["HostNotAllowed"];
        };
    };
    readyz: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Ready. */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "text/plain": "ready\n";
                };
            };
            403: components["responses"]["HostNotAllowed"];
            /** @description Not ready; the body says why. */
            503: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "text/plain": string;
                };
            };
        };
    };
    metrics: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description The metrics. */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "text/plain; version=0.0.4": string;
                };
            };
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["HostNotAllowed"];
        };
    };
    status: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description OK */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["StatusResponse"];
                    "application/msgpack": components["schemas"]["StatusResponse"];
                };
            };
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["HostNotAllowed"];
            500: components["responses"]["Internal"];
            503: components["responses"]["Unavailable"];
        };
    };
    usage: {
        parameters: {
            query?: {
                /** @description How many of the largest agents to name (0 to 1000; default 10). */
                top?: number;
            };
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description OK */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["UsageResponse"];
                    "application/msgpack": components["schemas"]["UsageResponse"];
                };
            };
            400: components["responses"]["Malformed"];
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["HostNotAllowed"];
            500: components["responses"]["Internal"];
            503: components["responses"]["Unavailable"];
        };
    };
    openapi: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description The OpenAPI document. */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": Record<string, never>;
                };
            };
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["HostNotAllowed"];
        };
    };
    getAgent: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description The agent. */
                id: components["parameters"]["AgentId"];
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description OK */
            200: {
                headers: {
                    /** @description The agent's version, quoted. */
                    ETag: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["PersistedState"];
                    "application/msgpack": components["schemas"]["PersistedState"];
                };
            };
            400: components["responses"]["Malformed"];
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["HostNotAllowed"];
            404: components["responses"]["NotFound"];
            500: components["responses"]["Internal"];
            503: components["responses"]["Unavailable"];
        };
    };
    putAgent: {
        parameters: {
            query?: {
                /** @description When the write is acknowledged: `local` (default) after the WAL's fsync, `remote` once the backend has it, `memory` before the fsync. Wins over the `Agentstate-Durability` header. */
                durability?: components["parameters"]["Durability"];
            };
            header?: {
                /** @description `*`: only if the agent does not exist; otherwise 409 `version_conflict`. */
                "If-None-Match"?: components["parameters"]["IfNoneMatch"];
                /** @description Only if the agent's version is this one (`"3"` or `3`); otherwise 409 `version_conflict`. Wins over `If-None-Match`. */
                "If-Match"?: components["parameters"]["IfMatch"];
                /** @description As the `durability` query parameter. */
                "Agentstate-Durability"?: components["parameters"]["DurabilityHeader"];
            };
            path: {
                /** @description The agent. */
                id: components["parameters"]["AgentId"];
            };
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["SaveStateRequest"];
                "application/msgpack": components["schemas"]["SaveStateRequest"];
            };
        };
        responses: {
            /** @description OK */
            200: {
                headers: {
                    /** @description The agent's version, quoted. */
                    ETag: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["VersionResponse"];
                    "application/msgpack": components["schemas"]["VersionResponse"];
                };
            };
            400: components["responses"]["Malformed"];
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["Forbidden"];
            404: components["responses"]["NotFound"];
            409: components["responses"]["Conflict"];
            413: components["responses"]["TooLarge"];
            415: components["responses"]["UnsupportedMediaType"];
            422: components["responses"]["ValidationFailed"];
            500: components["responses"]["Internal"];
            503: components["responses"]["Unavailable"];
        };
    };
    deleteAgent: {
        parameters: {
            query?: {
                /** @description When the write is acknowledged: `local` (default) after the WAL's fsync, `remote` once the backend has it, `memory` before the fsync. Wins over the `Agentstate-Durability` header. */
                durability?: components["parameters"]["Durability"];
            };
            header?: {
                /** @description Only if the agent's version is this one (`"3"` or `3`); otherwise 409 `version_conflict`. Wins over `If-None-Match`. */
                "If-Match"?: components["parameters"]["IfMatch"];
                /** @description As the `durability` query parameter. */
                "Agentstate-Durability"?: components["parameters"]["DurabilityHeader"];
            };
            path: {
                /** @description The agent. */
                id: components["parameters"]["AgentId"];
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Done; no body. */
            204: {
                headers: {
                    [name: string]: unknown;
                };
                content?: never;
            };
            400: components["responses"]["Malformed"];
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["Forbidden"];
            404: components["responses"]["NotFound"];
            409: components["responses"]["Conflict"];
            422: components["responses"]["ValidationFailed"];
            500: components["responses"]["Internal"];
            503: components["responses"]["Unavailable"];
        };
    };
    listTransitions: {
        parameters: {
            query?: {
                /** @description Entries after this `seq` (default 0: from the start). */
                after?: components["parameters"]["After"];
                /** @description Page size (default 100). */
                limit?: components["parameters"]["Limit"];
            };
            header?: never;
            path: {
                /** @description The agent. */
                id: components["parameters"]["AgentId"];
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description OK */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["TransitionsPage"];
                    "application/msgpack": components["schemas"]["TransitionsPage"];
                };
            };
            400: components["responses"]["Malformed"];
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["HostNotAllowed"];
            404: components["responses"]["NotFound"];
            500: components["responses"]["Internal"];
            503: components["responses"]["Unavailable"];
        };
    };
    postTransition: {
        parameters: {
            query?: {
                /** @description When the write is acknowledged: `local` (default) after the WAL's fsync, `remote` once the backend has it, `memory` before the fsync. Wins over the `Agentstate-Durability` header. */
                durability?: components["parameters"]["Durability"];
            };
            header?: {
                /** @description Only if the agent's version is this one (`"3"` or `3`); otherwise 409 `version_conflict`. Wins over `If-None-Match`. */
                "If-Match"?: components["parameters"]["IfMatch"];
                /** @description As the `durability` query parameter. */
                "Agentstate-Durability"?: components["parameters"]["DurabilityHeader"];
            };
            path: {
                /** @description The agent. */
                id: components["parameters"]["AgentId"];
            };
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["TransitionRequest"];
                "application/msgpack": components["schemas"]["TransitionRequest"];
            };
        };
        responses: {
            /** @description OK */
            200: {
                headers: {
                    /** @description The agent's version, quoted. */
                    ETag: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["TransitionResponse"];
                    "application/msgpack": components["schemas"]["TransitionResponse"];
                };
            };
            400: components["responses"]["Malformed"];
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["Forbidden"];
            404: components["responses"]["NotFound"];
            409: components["responses"]["Conflict"];
            413: components["responses"]["TooLarge"];
            415: components["responses"]["UnsupportedMediaType"];
            422: components["responses"]["ValidationFailed"];
            500: components["responses"]["Internal"];
            503: components["responses"]["Unavailable"];
        };
    };
    beginTransition: {
        parameters: {
            query?: {
                /** @description When the write is acknowledged: `local` (default) after the WAL's fsync, `remote` once the backend has it, `memory` before the fsync. Wins over the `Agentstate-Durability` header. */
                durability?: components["parameters"]["Durability"];
            };
            header?: {
                /** @description Only if the agent's version is this one (`"3"` or `3`); otherwise 409 `version_conflict`. Wins over `If-None-Match`. */
                "If-Match"?: components["parameters"]["IfMatch"];
                /** @description As the `durability` query parameter. */
                "Agentstate-Durability"?: components["parameters"]["DurabilityHeader"];
            };
            path: {
                /** @description The agent. */
                id: components["parameters"]["AgentId"];
            };
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["TransitionRequest"];
                "application/msgpack": components["schemas"]["TransitionRequest"];
            };
        };
        responses: {
            /** @description OK */
            200: {
                headers: {
                    /** @description The agent's version, quoted. */
                    ETag: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["BeginTransitionResponse"];
                    "application/msgpack": components["schemas"]["BeginTransitionResponse"];
                };
            };
            400: components["responses"]["Malformed"];
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["Forbidden"];
            404: components["responses"]["NotFound"];
            409: components["responses"]["Conflict"];
            413: components["responses"]["TooLarge"];
            415: components["responses"]["UnsupportedMediaType"];
            422: components["responses"]["ValidationFailed"];
            500: components["responses"]["Internal"];
            503: components["responses"]["Unavailable"];
        };
    };
    completeTransition: {
        parameters: {
            query?: {
                /** @description When the write is acknowledged: `local` (default) after the WAL's fsync, `remote` once the backend has it, `memory` before the fsync. Wins over the `Agentstate-Durability` header. */
                durability?: components["parameters"]["Durability"];
            };
            header?: {
                /** @description Only if the agent's version is this one (`"3"` or `3`); otherwise 409 `version_conflict`. Wins over `If-None-Match`. */
                "If-Match"?: components["parameters"]["IfMatch"];
                /** @description As the `durability` query parameter. */
                "Agentstate-Durability"?: components["parameters"]["DurabilityHeader"];
            };
            path: {
                /** @description The agent. */
                id: components["parameters"]["AgentId"];
                /** @description The pending transition's `id`. */
                tid: components["parameters"]["TransitionId"];
            };
            cookie?: never;
        };
        requestBody?: {
            content: {
                "application/json": components["schemas"]["CompleteTransitionRequest"];
                "application/msgpack": components["schemas"]["CompleteTransitionRequest"];
            };
        };
        responses: {
            /** @description OK */
            200: {
                headers: {
                    /** @description The agent's version, quoted. */
                    ETag: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["TransitionResponse"];
                    "application/msgpack": components["schemas"]["TransitionResponse"];
                };
            };
            400: components["responses"]["Malformed"];
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["Forbidden"];
            404: components["responses"]["NotFound"];
            409: components["responses"]["Conflict"];
            413: components["responses"]["TooLarge"];
            415: components["responses"]["UnsupportedMediaType"];
            422: components["responses"]["ValidationFailed"];
            500: components["responses"]["Internal"];
            503: components["responses"]["Unavailable"];
        };
    };
    abortTransition: {
        parameters: {
            query?: {
                /** @description When the write is acknowledged: `local` (default) after the WAL's fsync, `remote` once the backend has it, `memory` before the fsync. Wins over the `Agentstate-Durability` header. */
                durability?: components["parameters"]["Durability"];
            };
            header?: {
                /** @description Only if the agent's version is this one (`"3"` or `3`); otherwise 409 `version_conflict`. Wins over `If-None-Match`. */
                "If-Match"?: components["parameters"]["IfMatch"];
                /** @description As the `durability` query parameter. */
                "Agentstate-Durability"?: components["parameters"]["DurabilityHeader"];
            };
            path: {
                /** @description The agent. */
                id: components["parameters"]["AgentId"];
                /** @description The pending transition's `id`. */
                tid: components["parameters"]["TransitionId"];
            };
            cookie?: never;
        };
        requestBody?: {
            content: {
                "application/json": components["schemas"]["AbortTransitionRequest"];
                "application/msgpack": components["schemas"]["AbortTransitionRequest"];
            };
        };
        responses: {
            /** @description OK */
            200: {
                headers: {
                    /** @description The agent's version, quoted. */
                    ETag: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["TransitionResponse"];
                    "application/msgpack": components["schemas"]["TransitionResponse"];
                };
            };
            400: components["responses"]["Malformed"];
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["Forbidden"];
            404: components["responses"]["NotFound"];
            409: components["responses"]["Conflict"];
            413: components["responses"]["TooLarge"];
            415: components["responses"]["UnsupportedMediaType"];
            422: components["responses"]["ValidationFailed"];
            500: components["responses"]["Internal"];
            503: components["responses"]["Unavailable"];
        };
    };
    listMessages: {
        parameters: {
            query?: {
                /** @description Entries after this `seq` (default 0: from the start). */
                after?: components["parameters"]["After"];
                /** @description Page size (default 100). */
                limit?: components["parameters"]["Limit"];
                /** @description The latest N messages instead of a page (`after` and `limit` are then ignored). */
                last?: components["parameters"]["Last"];
            };
            header?: never;
            path: {
                /** @description The agent. */
                id: components["parameters"]["AgentId"];
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description OK */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["MessagesPage"];
                    "application/msgpack": components["schemas"]["MessagesPage"];
                };
            };
            400: components["responses"]["Malformed"];
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["HostNotAllowed"];
            404: components["responses"]["NotFound"];
            500: components["responses"]["Internal"];
            503: components["responses"]["Unavailable"];
        };
    };
    appendMessages: {
        parameters: {
            query?: {
                /** @description When the write is acknowledged: `local` (default) after the WAL's fsync, `remote` once the backend has it, `memory` before the fsync. Wins over the `Agentstate-Durability` header. */
                durability?: components["parameters"]["Durability"];
            };
            header?: {
                /** @description Only if the agent's version is this one (`"3"` or `3`); otherwise 409 `version_conflict`. Wins over `If-None-Match`. */
                "If-Match"?: components["parameters"]["IfMatch"];
                /** @description As the `durability` query parameter. */
                "Agentstate-Durability"?: components["parameters"]["DurabilityHeader"];
            };
            path: {
                /** @description The agent. */
                id: components["parameters"]["AgentId"];
            };
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["AppendMessagesRequest"];
                "application/msgpack": components["schemas"]["AppendMessagesRequest"];
            };
        };
        responses: {
            /** @description OK */
            200: {
                headers: {
                    /** @description The agent's version, quoted. */
                    ETag: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["AppendMessagesResponse"];
                    "application/msgpack": components["schemas"]["AppendMessagesResponse"];
                };
            };
            400: components["responses"]["Malformed"];
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["Forbidden"];
            404: components["responses"]["NotFound"];
            409: components["responses"]["Conflict"];
            413: components["responses"]["TooLarge"];
            415: components["responses"]["UnsupportedMediaType"];
            422: components["responses"]["ValidationFailed"];
            500: components["responses"]["Internal"];
            503: components["responses"]["Unavailable"];
        };
    };
    clearMessages: {
        parameters: {
            query?: {
                /** @description When the write is acknowledged: `local` (default) after the WAL's fsync, `remote` once the backend has it, `memory` before the fsync. Wins over the `Agentstate-Durability` header. */
                durability?: components["parameters"]["Durability"];
            };
            header?: {
                /** @description Only if the agent's version is this one (`"3"` or `3`); otherwise 409 `version_conflict`. Wins over `If-None-Match`. */
                "If-Match"?: components["parameters"]["IfMatch"];
                /** @description As the `durability` query parameter. */
                "Agentstate-Durability"?: components["parameters"]["DurabilityHeader"];
            };
            path: {
                /** @description The agent. */
                id: components["parameters"]["AgentId"];
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description OK */
            200: {
                headers: {
                    /** @description The agent's version, quoted. */
                    ETag: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["VersionResponse"];
                    "application/msgpack": components["schemas"]["VersionResponse"];
                };
            };
            400: components["responses"]["Malformed"];
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["Forbidden"];
            404: components["responses"]["NotFound"];
            409: components["responses"]["Conflict"];
            422: components["responses"]["ValidationFailed"];
            500: components["responses"]["Internal"];
            503: components["responses"]["Unavailable"];
        };
    };
    popMessage: {
        parameters: {
            query?: {
                /** @description When the write is acknowledged: `local` (default) after the WAL's fsync, `remote` once the backend has it, `memory` before the fsync. Wins over the `Agentstate-Durability` header. */
                durability?: components["parameters"]["Durability"];
            };
            header?: {
                /** @description Only if the agent's version is this one (`"3"` or `3`); otherwise 409 `version_conflict`. Wins over `If-None-Match`. */
                "If-Match"?: components["parameters"]["IfMatch"];
                /** @description As the `durability` query parameter. */
                "Agentstate-Durability"?: components["parameters"]["DurabilityHeader"];
            };
            path: {
                /** @description The agent. */
                id: components["parameters"]["AgentId"];
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description OK */
            200: {
                headers: {
                    /** @description The agent's version, quoted. */
                    ETag: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["PopMessageResponse"];
                    "application/msgpack": components["schemas"]["PopMessageResponse"];
                };
            };
            400: components["responses"]["Malformed"];
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["Forbidden"];
            404: components["responses"]["NotFound"];
            409: components["responses"]["Conflict"];
            422: components["responses"]["ValidationFailed"];
            500: components["responses"]["Internal"];
            503: components["responses"]["Unavailable"];
        };
    };
    listCheckpoints: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description The agent. */
                id: components["parameters"]["AgentId"];
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description OK */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["CheckpointsPage"];
                    "application/msgpack": components["schemas"]["CheckpointsPage"];
                };
            };
            400: components["responses"]["Malformed"];
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["HostNotAllowed"];
            404: components["responses"]["NotFound"];
            500: components["responses"]["Internal"];
            503: components["responses"]["Unavailable"];
        };
    };
    takeCheckpoint: {
        parameters: {
            query?: {
                /** @description When the write is acknowledged: `local` (default) after the WAL's fsync, `remote` once the backend has it, `memory` before the fsync. Wins over the `Agentstate-Durability` header. */
                durability?: components["parameters"]["Durability"];
            };
            header?: {
                /** @description Only if the agent's version is this one (`"3"` or `3`); otherwise 409 `version_conflict`. Wins over `If-None-Match`. */
                "If-Match"?: components["parameters"]["IfMatch"];
                /** @description As the `durability` query parameter. */
                "Agentstate-Durability"?: components["parameters"]["DurabilityHeader"];
            };
            path: {
                /** @description The agent. */
                id: components["parameters"]["AgentId"];
            };
            cookie?: never;
        };
        requestBody?: {
            content: {
                "application/json": components["schemas"]["CheckpointRequest"];
                "application/msgpack": components["schemas"]["CheckpointRequest"];
            };
        };
        responses: {
            /** @description OK */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["CheckpointResponse"];
                    "application/msgpack": components["schemas"]["CheckpointResponse"];
                };
            };
            400: components["responses"]["Malformed"];
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["Forbidden"];
            404: components["responses"]["NotFound"];
            409: components["responses"]["Conflict"];
            413: components["responses"]["TooLarge"];
            415: components["responses"]["UnsupportedMediaType"];
            422: components["responses"]["ValidationFailed"];
            500: components["responses"]["Internal"];
            503: components["responses"]["Unavailable"];
        };
    };
    rollback: {
        parameters: {
            query?: {
                /** @description When the write is acknowledged: `local` (default) after the WAL's fsync, `remote` once the backend has it, `memory` before the fsync. Wins over the `Agentstate-Durability` header. */
                durability?: components["parameters"]["Durability"];
            };
            header?: {
                /** @description Only if the agent's version is this one (`"3"` or `3`); otherwise 409 `version_conflict`. Wins over `If-None-Match`. */
                "If-Match"?: components["parameters"]["IfMatch"];
                /** @description As the `durability` query parameter. */
                "Agentstate-Durability"?: components["parameters"]["DurabilityHeader"];
            };
            path: {
                /** @description The agent. */
                id: components["parameters"]["AgentId"];
            };
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["RollbackRequest"];
                "application/msgpack": components["schemas"]["RollbackRequest"];
            };
        };
        responses: {
            /** @description OK */
            200: {
                headers: {
                    /** @description The agent's version, quoted. */
                    ETag: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["TransitionResponse"];
                    "application/msgpack": components["schemas"]["TransitionResponse"];
                };
            };
            400: components["responses"]["Malformed"];
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["Forbidden"];
            404: components["responses"]["NotFound"];
            409: components["responses"]["Conflict"];
            413: components["responses"]["TooLarge"];
            415: components["responses"]["UnsupportedMediaType"];
            422: components["responses"]["ValidationFailed"];
            500: components["responses"]["Internal"];
            503: components["responses"]["Unavailable"];
        };
    };
    replay: {
        parameters: {
            query?: {
                /** @description When the write is acknowledged: `local` (default) after the WAL's fsync, `remote` once the backend has it, `memory` before the fsync. Wins over the `Agentstate-Durability` header. */
                durability?: components["parameters"]["Durability"];
            };
            header?: {
                /** @description Only if the agent's version is this one (`"3"` or `3`); otherwise 409 `version_conflict`. Wins over `If-None-Match`. */
                "If-Match"?: components["parameters"]["IfMatch"];
                /** @description As the `durability` query parameter. */
                "Agentstate-Durability"?: components["parameters"]["DurabilityHeader"];
            };
            path: {
                /** @description The agent. */
                id: components["parameters"]["AgentId"];
            };
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["ReplayRequest"];
                "application/msgpack": components["schemas"]["ReplayRequest"];
            };
        };
        responses: {
            /** @description OK */
            200: {
                headers: {
                    /** @description The agent's version, quoted. */
                    ETag: string;
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ReplayResponse"];
                    "application/msgpack": components["schemas"]["ReplayResponse"];
                };
            };
            400: components["responses"]["Malformed"];
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["Forbidden"];
            404: components["responses"]["NotFound"];
            409: components["responses"]["Conflict"];
            413: components["responses"]["TooLarge"];
            415: components["responses"]["UnsupportedMediaType"];
            422: components["responses"]["ValidationFailed"];
            500: components["responses"]["Internal"];
            503: components["responses"]["Unavailable"];
        };
    };
    listTransfers: {
        parameters: {
            query?: {
                /** @description Only transfers from or to this agent. */
                agent?: components["schemas"]["AgentId"];
                /** @description The `next_cursor` of the page before; absent or empty: the first page. */
                cursor?: string;
                /** @description Page size (default 100). */
                limit?: components["parameters"]["Limit"];
            };
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description OK */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["TransfersPage"];
                    "application/msgpack": components["schemas"]["TransfersPage"];
                };
            };
            400: components["responses"]["Malformed"];
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["HostNotAllowed"];
            500: components["responses"]["Internal"];
            503: components["responses"]["Unavailable"];
        };
    };
    transfer: {
        parameters: {
            query?: {
                /** @description When the write is acknowledged: `local` (default) after the WAL's fsync, `remote` once the backend has it, `memory` before the fsync. Wins over the `Agentstate-Durability` header. */
                durability?: components["parameters"]["Durability"];
            };
            header?: {
                /** @description As the `durability` query parameter. */
                "Agentstate-Durability"?: components["parameters"]["DurabilityHeader"];
            };
            path?: never;
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["TransferRequest"];
                "application/msgpack": components["schemas"]["TransferRequest"];
            };
        };
        responses: {
            /** @description OK */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Transfer"];
                    "application/msgpack": components["schemas"]["Transfer"];
                };
            };
            400: components["responses"]["Malformed"];
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["Forbidden"];
            404: components["responses"]["NotFound"];
            409: components["responses"]["Conflict"];
            413: components["responses"]["TooLarge"];
            415: components["responses"]["UnsupportedMediaType"];
            422: components["responses"]["ValidationFailed"];
            500: components["responses"]["Internal"];
            503: components["responses"]["Unavailable"];
        };
    };
    getTransfer: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description The transfer. */
                id: components["parameters"]["TransferId"];
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description OK */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["Transfer"];
                    "application/msgpack": components["schemas"]["Transfer"];
                };
            };
            400: components["responses"]["Malformed"];
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["HostNotAllowed"];
            404: components["responses"]["NotFound"];
            500: components["responses"]["Internal"];
            503: components["responses"]["Unavailable"];
        };
    };
    batch: {
        parameters: {
            query?: {
                /** @description When the write is acknowledged: `local` (default) after the WAL's fsync, `remote` once the backend has it, `memory` before the fsync. Wins over the `Agentstate-Durability` header. */
                durability?: components["parameters"]["Durability"];
            };
            header?: {
                /** @description As the `durability` query parameter. */
                "Agentstate-Durability"?: components["parameters"]["DurabilityHeader"];
            };
            path?: never;
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["BatchRequest"];
                "application/msgpack": components["schemas"]["BatchRequest"];
            };
        };
        responses: {
            /** @description OK */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["BatchResponse"];
                    "application/msgpack": components["schemas"]["BatchResponse"];
                };
            };
            400: components["responses"]["Malformed"];
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["Forbidden"];
            404: components["responses"]["NotFound"];
            409: components["responses"]["Conflict"];
            413: components["responses"]["TooLarge"];
            415: components["responses"]["UnsupportedMediaType"];
            422: components["responses"]["ValidationFailed"];
            500: components["responses"]["Internal"];
            503: components["responses"]["Unavailable"];
        };
    };
    deleteThread: {
        parameters: {
            query?: {
                /** @description When the write is acknowledged: `local` (default) after the WAL's fsync, `remote` once the backend has it, `memory` before the fsync. Wins over the `Agentstate-Durability` header. */
                durability?: components["parameters"]["Durability"];
            };
            header?: {
                /** @description As the `durability` query parameter. */
                "Agentstate-Durability"?: components["parameters"]["DurabilityHeader"];
            };
            path: {
                /** @description The thread (an agent). */
                id: components["parameters"]["ThreadId"];
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description Done; no body. */
            204: {
                headers: {
                    [name: string]: unknown;
                };
                content?: never;
            };
            400: components["responses"]["Malformed"];
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["Forbidden"];
            404: components["responses"]["NotFound"];
            409: components["responses"]["Conflict"];
            422: components["responses"]["ValidationFailed"];
            500: components["responses"]["Internal"];
            503: components["responses"]["Unavailable"];
        };
    };
    putThreadCheckpoint: {
        parameters: {
            query?: {
                /** @description When the write is acknowledged: `local` (default) after the WAL's fsync, `remote` once the backend has it, `memory` before the fsync. Wins over the `Agentstate-Durability` header. */
                durability?: components["parameters"]["Durability"];
            };
            header?: {
                /** @description As the `durability` query parameter. */
                "Agentstate-Durability"?: components["parameters"]["DurabilityHeader"];
            };
            path: {
                /** @description The thread (an agent). */
                id: components["parameters"]["ThreadId"];
            };
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["PutThreadCheckpointRequest"];
                "application/msgpack": components["schemas"]["PutThreadCheckpointRequest"];
            };
        };
        responses: {
            /** @description OK */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["PutThreadCheckpointResponse"];
                    "application/msgpack": components["schemas"]["PutThreadCheckpointResponse"];
                };
            };
            400: components["responses"]["Malformed"];
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["Forbidden"];
            404: components["responses"]["NotFound"];
            409: components["responses"]["Conflict"];
            413: components["responses"]["TooLarge"];
            415: components["responses"]["UnsupportedMediaType"];
            422: components["responses"]["ValidationFailed"];
            500: components["responses"]["Internal"];
            503: components["responses"]["Unavailable"];
        };
    };
    putThreadWrites: {
        parameters: {
            query?: {
                /** @description When the write is acknowledged: `local` (default) after the WAL's fsync, `remote` once the backend has it, `memory` before the fsync. Wins over the `Agentstate-Durability` header. */
                durability?: components["parameters"]["Durability"];
            };
            header?: {
                /** @description As the `durability` query parameter. */
                "Agentstate-Durability"?: components["parameters"]["DurabilityHeader"];
            };
            path: {
                /** @description The thread (an agent). */
                id: components["parameters"]["ThreadId"];
            };
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["PutThreadWritesRequest"];
                "application/msgpack": components["schemas"]["PutThreadWritesRequest"];
            };
        };
        responses: {
            /** @description OK */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["VersionResponse"];
                    "application/msgpack": components["schemas"]["VersionResponse"];
                };
            };
            400: components["responses"]["Malformed"];
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["Forbidden"];
            404: components["responses"]["NotFound"];
            409: components["responses"]["Conflict"];
            413: components["responses"]["TooLarge"];
            415: components["responses"]["UnsupportedMediaType"];
            422: components["responses"]["ValidationFailed"];
            500: components["responses"]["Internal"];
            503: components["responses"]["Unavailable"];
        };
    };
    getThreadCheckpoint: {
        parameters: {
            query?: {
                /** @description The namespace (default: the root, `""`). */
                checkpoint_ns?: components["parameters"]["CheckpointNs"];
                /** @description The checkpoint; absent or empty: the namespace's latest. */
                checkpoint_id?: components["parameters"]["CheckpointId"];
            };
            header?: never;
            path: {
                /** @description The thread (an agent). */
                id: components["parameters"]["ThreadId"];
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description OK */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ThreadCheckpointTuple"];
                    "application/msgpack": components["schemas"]["ThreadCheckpointTuple"];
                };
            };
            400: components["responses"]["Malformed"];
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["HostNotAllowed"];
            404: components["responses"]["NotFound"];
            422: components["responses"]["ValidationFailed"];
            500: components["responses"]["Internal"];
            503: components["responses"]["Unavailable"];
        };
    };
    copyThread: {
        parameters: {
            query?: {
                /** @description When the write is acknowledged: `local` (default) after the WAL's fsync, `remote` once the backend has it, `memory` before the fsync. Wins over the `Agentstate-Durability` header. */
                durability?: components["parameters"]["Durability"];
            };
            header?: {
                /** @description As the `durability` query parameter. */
                "Agentstate-Durability"?: components["parameters"]["DurabilityHeader"];
            };
            path: {
                /** @description The thread (an agent). */
                id: components["parameters"]["ThreadId"];
            };
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["CopyThreadRequest"];
                "application/msgpack": components["schemas"]["CopyThreadRequest"];
            };
        };
        responses: {
            /** @description OK */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["CopyThreadResponse"];
                    "application/msgpack": components["schemas"]["CopyThreadResponse"];
                };
            };
            400: components["responses"]["Malformed"];
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["Forbidden"];
            404: components["responses"]["NotFound"];
            409: components["responses"]["Conflict"];
            413: components["responses"]["TooLarge"];
            415: components["responses"]["UnsupportedMediaType"];
            422: components["responses"]["ValidationFailed"];
            500: components["responses"]["Internal"];
            503: components["responses"]["Unavailable"];
        };
    };
    deltaHistory: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description The thread (an agent). */
                id: components["parameters"]["ThreadId"];
            };
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["DeltaHistoryRequest"];
                "application/msgpack": components["schemas"]["DeltaHistoryRequest"];
            };
        };
        responses: {
            /** @description OK */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["DeltaHistoryResponse"];
                    "application/msgpack": components["schemas"]["DeltaHistoryResponse"];
                };
            };
            400: components["responses"]["Malformed"];
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["Forbidden"];
            413: components["responses"]["TooLarge"];
            415: components["responses"]["UnsupportedMediaType"];
            422: components["responses"]["ValidationFailed"];
            500: components["responses"]["Internal"];
            503: components["responses"]["Unavailable"];
        };
    };
    searchCheckpoints: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["SearchCheckpointsRequest"];
                "application/msgpack": components["schemas"]["SearchCheckpointsRequest"];
            };
        };
        responses: {
            /** @description OK */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ThreadCheckpointsPage"];
                    "application/msgpack": components["schemas"]["ThreadCheckpointsPage"];
                };
            };
            400: components["responses"]["Malformed"];
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["Forbidden"];
            413: components["responses"]["TooLarge"];
            415: components["responses"]["UnsupportedMediaType"];
            422: components["responses"]["ValidationFailed"];
            500: components["responses"]["Internal"];
            503: components["responses"]["Unavailable"];
        };
    };
    pruneCheckpoints: {
        parameters: {
            query?: {
                /** @description When the write is acknowledged: `local` (default) after the WAL's fsync, `remote` once the backend has it, `memory` before the fsync. Wins over the `Agentstate-Durability` header. */
                durability?: components["parameters"]["Durability"];
            };
            header?: {
                /** @description As the `durability` query parameter. */
                "Agentstate-Durability"?: components["parameters"]["DurabilityHeader"];
            };
            path?: never;
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["PruneRequest"];
                "application/msgpack": components["schemas"]["PruneRequest"];
            };
        };
        responses: {
            /** @description OK */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["CheckpointsDeletedResponse"];
                    "application/msgpack": components["schemas"]["CheckpointsDeletedResponse"];
                };
            };
            400: components["responses"]["Malformed"];
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["Forbidden"];
            404: components["responses"]["NotFound"];
            409: components["responses"]["Conflict"];
            413: components["responses"]["TooLarge"];
            415: components["responses"]["UnsupportedMediaType"];
            422: components["responses"]["ValidationFailed"];
            500: components["responses"]["Internal"];
            503: components["responses"]["Unavailable"];
        };
    };
    deleteForRuns: {
        parameters: {
            query?: {
                /** @description When the write is acknowledged: `local` (default) after the WAL's fsync, `remote` once the backend has it, `memory` before the fsync. Wins over the `Agentstate-Durability` header. */
                durability?: components["parameters"]["Durability"];
            };
            header?: {
                /** @description As the `durability` query parameter. */
                "Agentstate-Durability"?: components["parameters"]["DurabilityHeader"];
            };
            path?: never;
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["DeleteForRunsRequest"];
                "application/msgpack": components["schemas"]["DeleteForRunsRequest"];
            };
        };
        responses: {
            /** @description OK */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["CheckpointsDeletedResponse"];
                    "application/msgpack": components["schemas"]["CheckpointsDeletedResponse"];
                };
            };
            400: components["responses"]["Malformed"];
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["Forbidden"];
            404: components["responses"]["NotFound"];
            409: components["responses"]["Conflict"];
            413: components["responses"]["TooLarge"];
            415: components["responses"]["UnsupportedMediaType"];
            422: components["responses"]["ValidationFailed"];
            500: components["responses"]["Internal"];
            503: components["responses"]["Unavailable"];
        };
    };
    listAgents: {
        parameters: {
            query?: {
                /** @description Ids starting with this. */
                prefix?: string;
                /** @description In this state. */
                state?: string;
                /** @description Of this agent type. */
                type?: string;
                /** @description Changed after this time (RFC 3339). */
                updated_after?: string;
                /** @description Only agents with a refused transition in their log. */
                failed?: boolean;
                /** @description The `next_cursor` of the page before; absent or empty: the first page. */
                cursor?: string;
                /** @description Page size (default 100). */
                limit?: components["parameters"]["Limit"];
            };
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description OK */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["AgentsPage"];
                    "application/msgpack": components["schemas"]["AgentsPage"];
                };
            };
            400: components["responses"]["Malformed"];
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["HostNotAllowed"];
            500: components["responses"]["Internal"];
            503: components["responses"]["Unavailable"];
        };
    };
    listThreads: {
        parameters: {
            query?: {
                /** @description Ids starting with this. */
                prefix?: string;
                /** @description The `next_cursor` of the page before; absent or empty: the first page. */
                cursor?: string;
                /** @description Page size (default 100). */
                limit?: components["parameters"]["Limit"];
            };
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description OK */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ThreadsPage"];
                    "application/msgpack": components["schemas"]["ThreadsPage"];
                };
            };
            400: components["responses"]["Malformed"];
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["HostNotAllowed"];
            500: components["responses"]["Internal"];
            503: components["responses"]["Unavailable"];
        };
    };
    timeline: {
        parameters: {
            query?: {
                /** @description The `next_cursor` of the page before; absent or empty: the first page. */
                cursor?: string;
                /** @description Page size (default 100). */
                limit?: components["parameters"]["Limit"];
            };
            header?: never;
            path: {
                /** @description The agent. */
                id: components["parameters"]["AgentId"];
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description OK */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["TimelinePage"];
                    "application/msgpack": components["schemas"]["TimelinePage"];
                };
            };
            400: components["responses"]["Malformed"];
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["HostNotAllowed"];
            404: components["responses"]["NotFound"];
            500: components["responses"]["Internal"];
            503: components["responses"]["Unavailable"];
        };
    };
    threadHistory: {
        parameters: {
            query?: {
                /** @description The namespace (default: the root, `""`). */
                checkpoint_ns?: components["parameters"]["CheckpointNs"];
                /** @description The `next_cursor` of the page before (a checkpoint id); absent or empty: the latest. */
                cursor?: string;
                /** @description Page size (default 100). */
                limit?: components["parameters"]["Limit"];
            };
            header?: never;
            path: {
                /** @description The thread (an agent). */
                id: components["parameters"]["ThreadId"];
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description OK */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ThreadHistoryPage"];
                    "application/msgpack": components["schemas"]["ThreadHistoryPage"];
                };
            };
            400: components["responses"]["Malformed"];
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["HostNotAllowed"];
            422: components["responses"]["ValidationFailed"];
            500: components["responses"]["Internal"];
            503: components["responses"]["Unavailable"];
        };
    };
    threadView: {
        parameters: {
            query?: {
                /** @description The namespace (default: the root, `""`). */
                checkpoint_ns?: components["parameters"]["CheckpointNs"];
                /** @description The checkpoint; absent or empty: the namespace's latest. */
                checkpoint_id?: components["parameters"]["CheckpointId"];
            };
            header?: never;
            path: {
                /** @description The thread (an agent). */
                id: components["parameters"]["ThreadId"];
            };
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description OK */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["ThreadView"];
                    "application/msgpack": components["schemas"]["ThreadView"];
                };
            };
            400: components["responses"]["Malformed"];
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["HostNotAllowed"];
            404: components["responses"]["NotFound"];
            422: components["responses"]["ValidationFailed"];
            500: components["responses"]["Internal"];
            503: components["responses"]["Unavailable"];
        };
    };
    inspectorInfo: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description OK */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["InspectorInfo"];
                    "application/msgpack": components["schemas"]["InspectorInfo"];
                };
            };
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["HostNotAllowed"];
            500: components["responses"]["Internal"];
            503: components["responses"]["Unavailable"];
        };
    };
    inspectorPage: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description OK, under a strict Content-Security-Policy. */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "text/html": string;
                };
            };
            403: components["responses"]["HostNotAllowed"];
            500: components["responses"]["Internal"];
        };
    };
    inspectorScript: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description OK, under a strict Content-Security-Policy. */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "text/javascript": string;
                };
            };
            403: components["responses"]["HostNotAllowed"];
            500: components["responses"]["Internal"];
        };
    };
    inspectorStyle: {
        parameters: {
            query?: never;
            header?: never;
            path?: never;
            cookie?: never;
        };
        requestBody?: never;
        responses: {
            /** @description OK, under a strict Content-Security-Policy. */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "text/css": string;
                };
            };
            403: components["responses"]["HostNotAllowed"];
            500: components["responses"]["Internal"];
        };
    };
    inspectorRollback: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description The agent. */
                id: components["parameters"]["AgentId"];
            };
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["InspectorRollbackRequest"];
                "application/msgpack": components["schemas"]["InspectorRollbackRequest"];
            };
        };
        responses: {
            /** @description OK */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["TransitionResponse"];
                    "application/msgpack": components["schemas"]["TransitionResponse"];
                };
            };
            400: components["responses"]["Malformed"];
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["InspectorForbidden"];
            404: components["responses"]["NotFound"];
            409: components["responses"]["Conflict"];
            413: components["responses"]["TooLarge"];
            415: components["responses"]["UnsupportedMediaType"];
            422: components["responses"]["ValidationFailed"];
            500: components["responses"]["Internal"];
            503: components["responses"]["Unavailable"];
        };
    };
    inspectorAbort: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description The agent. */
                id: components["parameters"]["AgentId"];
                /** @description The pending transition's `id`. */
                tid: components["parameters"]["TransitionId"];
            };
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["InspectorAbortRequest"];
                "application/msgpack": components["schemas"]["InspectorAbortRequest"];
            };
        };
        responses: {
            /** @description OK */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["TransitionResponse"];
                    "application/msgpack": components["schemas"]["TransitionResponse"];
                };
            };
            400: components["responses"]["Malformed"];
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["InspectorForbidden"];
            404: components["responses"]["NotFound"];
            409: components["responses"]["Conflict"];
            413: components["responses"]["TooLarge"];
            415: components["responses"]["UnsupportedMediaType"];
            422: components["responses"]["ValidationFailed"];
            500: components["responses"]["Internal"];
            503: components["responses"]["Unavailable"];
        };
    };
    inspectorFork: {
        parameters: {
            query?: never;
            header?: never;
            path: {
                /** @description The thread (an agent). */
                id: components["parameters"]["ThreadId"];
            };
            cookie?: never;
        };
        requestBody: {
            content: {
                "application/json": components["schemas"]["InspectorForkRequest"];
                "application/msgpack": components["schemas"]["InspectorForkRequest"];
            };
        };
        responses: {
            /** @description OK */
            200: {
                headers: {
                    [name: string]: unknown;
                };
                content: {
                    "application/json": components["schemas"]["PutThreadCheckpointResponse"];
                    "application/msgpack": components["schemas"]["PutThreadCheckpointResponse"];
                };
            };
            400: components["responses"]["Malformed"];
            401: components["responses"]["Unauthorized"];
            403: components["responses"]["InspectorForbidden"];
            404: components["responses"]["NotFound"];
            409: components["responses"]["Conflict"];
            413: components["responses"]["TooLarge"];
            415: components["responses"]["UnsupportedMediaType"];
            422: components["responses"]["ValidationFailed"];
            500: components["responses"]["Internal"];
            503: components["responses"]["Unavailable"];
        };
    };
}
