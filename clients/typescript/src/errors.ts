/**
 * Typed errors, one class per error code the sidecar returns. The wire body is
 * `{"error": {"code", "message", "current_version"?}}`; {@link errorFromResponse} is the
 * one place that maps it.
 */

/** Rules a `validation_failed` message names (README "Agent types"). */
export const VALIDATION_RULES = [
  "unknown_agent_type",
  "unknown_state",
  "transition_not_allowed",
  "schema_mismatch",
] as const;

export type ValidationRule = (typeof VALIDATION_RULES)[number];

/** Any error the sidecar (or reaching it) produced. `status` is 0 when no answer came. */
export class AgentstateError extends Error {
  readonly code: string;
  readonly status: number;
  readonly detail: string;

  constructor(code: string, message: string, status = 0) {
    super(status ? `${code} (${status}): ${message}` : `${code}: ${message}`);
    this.name = new.target.name;
    this.code = code;
    this.status = status;
    this.detail = message;
  }
}

/** 400: refused as bad input; nothing was stored. */
export class Malformed extends AgentstateError {}
/** 401: the bearer token is missing or wrong (`AGENTSTATE_TOKEN`). */
export class Unauthorized extends AgentstateError {}
/**
 * 403: `host_not_allowed` (use a loopback address, or start the sidecar with
 * `--allowed-hosts`), `cross_origin`, or `ui_writes_disabled`.
 */
export class Forbidden extends AgentstateError {}
/** 404: no such agent, thread, checkpoint or transfer. */
export class NotFound extends AgentstateError {}
/** 409 `conflict`: the agent's state forbids this now (a pending transition, a lease). */
export class Conflict extends AgentstateError {}

/** 409 `version_conflict`: an `If-Match` / `If-None-Match` precondition failed. */
export class VersionConflict extends Conflict {
  /** The stored version; `null` when the agent does not exist. */
  readonly currentVersion: number | null;

  constructor(code: string, message: string, status: number, currentVersion: number | null) {
    super(code, message, status);
    this.currentVersion = currentVersion;
  }
}

/** 413: the body exceeds the sidecar's `--body-bytes-max`. */
export class TooLarge extends AgentstateError {}

/** 422: refused by the agent type's rules; `rule` is the rule the message names. */
export class ValidationFailed extends AgentstateError {
  readonly rule: ValidationRule | null;

  constructor(code: string, message: string, status = 422) {
    super(code, message, status);
    this.rule = VALIDATION_RULES.find((r) => message.includes(r)) ?? null;
  }
}

/** 503: the sidecar cannot take this now; `retryAfter` is its `Retry-After`, in seconds. */
export class Unavailable extends AgentstateError {
  readonly retryAfter: number | null;

  constructor(code: string, message: string, status = 503, retryAfter: number | null = null) {
    super(code, message, status);
    this.retryAfter = retryAfter;
  }
}

/** No answer: nothing listens, the connection broke, or the request timed out. */
export class ConnectionFailed extends AgentstateError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("connection_failed", message, 0);
    if (options?.cause !== undefined) {
      (this as { cause?: unknown }).cause = options.cause;
    }
  }
}

const BY_CODE: Record<string, typeof AgentstateError> = {
  malformed: Malformed,
  unauthorized: Unauthorized,
  host_not_allowed: Forbidden,
  cross_origin: Forbidden,
  ui_writes_disabled: Forbidden,
  not_found: NotFound,
  conflict: Conflict,
  too_large: TooLarge,
  validation_failed: ValidationFailed,
};

const BY_STATUS: Record<number, typeof AgentstateError> = {
  400: Malformed,
  401: Unauthorized,
  403: Forbidden,
  404: NotFound,
  409: Conflict,
  413: TooLarge,
  422: ValidationFailed,
};

const DEFAULT_CODE: Record<number, string> = {
  400: "malformed",
  401: "unauthorized",
  403: "host_not_allowed",
  404: "not_found",
  405: "method_not_allowed",
  409: "conflict",
  413: "too_large",
  415: "unsupported_media_type",
  422: "validation_failed",
  503: "unavailable",
};

/** `Retry-After` as seconds (the sidecar sends delta-seconds only). */
export function parseRetryAfter(value: string | null | undefined): number | null {
  if (value == null || value.trim() === "") return null;
  const seconds = Number(value.trim());
  return Number.isFinite(seconds) && seconds >= 0 ? seconds : null;
}

/**
 * The typed error of a non-2xx answer whose decoded body is `body` (the error document,
 * or text when the answer was not one: a proxy's page, a plain-text 503 from `/readyz`).
 */
export function errorFromResponse(
  status: number,
  body: unknown,
  retryAfterHeader?: string | null,
): AgentstateError {
  const detail =
    body !== null && typeof body === "object" && "error" in body && typeof body.error === "object"
      ? (body.error as Record<string, unknown>)
      : {};
  const code = String(
    detail.code ?? DEFAULT_CODE[status] ?? (status >= 500 ? "internal" : "http_error"),
  );
  const message = String(detail.message ?? (typeof body === "string" ? body : "")).trim();
  if (code === "version_conflict") {
    const current = detail.current_version;
    return new VersionConflict(
      code,
      message,
      status,
      typeof current === "number" && Number.isInteger(current) ? current : null,
    );
  }
  if (code === "unavailable" || status === 503) {
    return new Unavailable(code, message, status, parseRetryAfter(retryAfterHeader));
  }
  const Kind = BY_CODE[code] ?? BY_STATUS[status] ?? AgentstateError;
  return new Kind(code, message, status);
}
