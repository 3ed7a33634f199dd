"""The chat proxy protocol v2, sans I/O: the codec (frames <-> typed events, the same event
classes for both roles), the client side of one streamed answer (:class:`ClientStream`: what
each frame means for the request in flight) and the server side of one connection
(:class:`ServerConnection`: what each client frame asks for, which frames its state allows).
No sockets, no asyncio, no clock: the I/O layer feeds frames and their arrival times in and
writes what this package encodes.

Adding a server event: decode and encode it in :mod:`.codec`, decide what it means for a
stream in :mod:`.stream` and when the server may send it in :mod:`.server`, and test them in
tests/protocol/ (test_protocol.py, test_stream.py, test_server.py: the two sides joined).
"""

from loadtest.protocol.codec import (
    AuthComplete,
    ClientEvent,
    ConvMessage,
    ErrorEvent,
    GenRequest,
    LocalProtocolError,
    Message,
    Ping,
    Pong,
    ServerEvent,
    SetModel,
    SetModelComplete,
    UnknownEvent,
    decode_client_event,
    decode_client_frame,
    decode_server_frame,
    decode_stream_frame,
    encode_gen,
    encode_ping,
    encode_server,
    encode_server_event,
    encode_set_model,
)
from loadtest.protocol.server import ClientInput, RefusedFrame, ServerConnection, ServerState
from loadtest.protocol.stream import CHUNK, DONE, FAILED, FIRST_TOKEN, ClientStream

__all__ = [
    "CHUNK",
    "DONE",
    "FAILED",
    "FIRST_TOKEN",
    "AuthComplete",
    "ClientEvent",
    "ClientInput",
    "ClientStream",
    "ConvMessage",
    "ErrorEvent",
    "GenRequest",
    "LocalProtocolError",
    "Message",
    "Ping",
    "Pong",
    "RefusedFrame",
    "ServerConnection",
    "ServerEvent",
    "ServerState",
    "SetModel",
    "SetModelComplete",
    "UnknownEvent",
    "decode_client_event",
    "decode_client_frame",
    "decode_server_frame",
    "decode_stream_frame",
    "encode_gen",
    "encode_ping",
    "encode_server",
    "encode_server_event",
    "encode_set_model",
]
