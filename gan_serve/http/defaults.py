"""The defaults of `gan-serve serve`, declared once: `ServeSettings` reads them, and so does the
command's --help, which must not import pydantic (it works without the serve extra)."""

HOST = "127.0.0.1"  # bind address: loopback unless asked
PORT = 8000
WORKERS = 1  # uvicorn processes
MAX_BATCH = 64  # images in one merged forward pass
MAX_DELAY_MS = 0.0  # extra wait for a batch to fill
MAX_QUEUE = 1024  # images accepted per model before 429
HEADER_TIMEOUT_S = 10.0  # seconds for a request's head (and an idle connection)
BODY_TIMEOUT_S = 30.0  # seconds for a request's body
MAX_CONNECTIONS = 512  # the cap where the open-files limit allows more
