"""What sits between uvicorn and the app: `protocol.JemHttpToolsProtocol` (uvicorn's httptools
protocol, with a cap and a deadline for request heads, answering its errors in the API's shape) and
`workers.forget_dead_workers` (the metrics files of worker processes that died)."""
