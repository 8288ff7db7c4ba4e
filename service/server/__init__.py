"""What sits between uvicorn and the app: `protocol.JemH11Protocol` (uvicorn's h11 protocol,
answering its own errors in the API's shape, with a deadline for request heads) and
`workers.forget_dead_workers` (the metrics files of worker processes that died)."""
