import type { AgentstateSaver } from "../src/langgraph.js";

/** Records, per put, whether its `messages` blob went as a delta. */
export function record(saver: AgentstateSaver): string[] {
  const kinds: string[] = [];
  const client = saver.client;
  const real = client.putThreadCheckpoint.bind(client);
  client.putThreadCheckpoint = (id, request, opts) => {
    for (const b of request.blobs ?? []) {
      if (b.channel === "messages") kinds.push(b.extends ? "delta" : "whole");
    }
    return real(id, request, opts);
  };
  return kinds;
}
