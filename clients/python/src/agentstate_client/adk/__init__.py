"""Google ADK sessions on the agentstate sidecar.

``AgentstateSessionService`` implements ADK's ``BaseSessionService`` (create, get with
``GetSessionConfig``, list, delete, append with state deltas, and ``get_user_state``):
``Runner(agent=..., app_name=..., session_service=AgentstateSessionService())`` keeps every
session, its events and its ``app:`` / ``user:`` state in the sidecar. Needs the ``adk``
extra: ``pip install 'agentstate-client[adk]'``.
"""

try:
    import google.adk.sessions  # noqa: F401
except ImportError as e:  # say which extra brings it, not just what is missing
    raise ImportError(
        "agentstate_client.adk needs the adk extra: pip install 'agentstate-client[adk]'"
    ) from e

from agentstate_client.adk.session_service import AgentstateSessionService

__all__ = ["AgentstateSessionService"]
