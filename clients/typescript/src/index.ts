export {
  BROWSER_ONLY,
  Client,
  OPERATIONS,
  type OperationId,
  PAGE_LIMIT_MAX,
  type PersistedState,
  type Schemas,
  type ThreadCheckpointTuple,
  type Typed,
  type VersionedWriteOptions,
  type WriteOptions,
} from "./client.js";
export {
  type ClientOptions,
  type Codec,
  type Durability,
  ENV_SOCKET,
  ENV_TOKEN,
  ENV_URL,
  resolveSettings,
  type Settings,
} from "./config.js";
export * from "./errors.js";
export type { components, paths } from "./openapi.js";
