"""The live stream, in one package: what a change records and how it reaches the sockets.

- `events`: stream events, recorded in the transaction of the change they describe
  (`EventBatch`), shaped per role (`shaped_for`), published on commit.
- `consumers`: the websocket consumer, one per socket (catch-up, batching, the slow
  client's bound).
- `hub`: the per-process hub, the only member of the channel-layer group, which puts
  events in order, fills holes from the database and hands them to the sockets.
- `transport_watch`: the slow-socket watch, a push producer on daphne's transport.
- `revocation`: a login that ends closes its sockets (4401).
- `ws_auth`, `routing`: token or session authentication for sockets; `/ws/stream/`.

The protocol is in docs/live-stream.md.
"""
