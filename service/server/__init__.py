"""What sits between uvicorn and the app: `protocol.JemHttpToolsProtocol` (uvicorn's httptools
protocol, with a cap and a deadline for request heads, answering its errors in the API's shape),
`workers.forget_dead_workers` (the metrics files of worker processes that died) and
`prefork.forked_workers` (`--workers N` forked from a parent that has imported the app)."""
