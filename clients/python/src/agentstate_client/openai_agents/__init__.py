"""OpenAI Agents SDK session on the agentstate sidecar.

``AgentstateSession`` implements the SDK's ``Session`` protocol (``get_items``,
``add_items``, ``pop_item``, ``clear_session``) on an agent's conversation, so
``Runner.run(agent, input, session=AgentstateSession("user-42"))`` keeps its history in
the sidecar. Needs the ``openai-agents`` extra: ``pip install 'agentstate-client[openai-agents]'``.
"""

try:
    import agents.memory  # noqa: F401
except ImportError as e:  # say which extra brings it, not just what is missing
    raise ImportError(
        "agentstate_client.openai_agents needs the openai-agents extra: "
        "pip install 'agentstate-client[openai-agents]'"
    ) from e

from agentstate_client.openai_agents.session import AgentstateSession

__all__ = ["AgentstateSession"]
