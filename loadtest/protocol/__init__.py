"""The chat proxy protocol v2, sans I/O: the codec (frames <-> typed events) and the client
side of one streamed answer (:class:`ClientStream`: what each frame means for the request in
flight). No sockets, no asyncio, no clock: the I/O layer feeds frames and their arrival times
in and writes what this package encodes.

Adding a server event is one place: decode it in :mod:`.codec`, decide what it means for a
stream in :mod:`.stream`, and test both in tests/test_protocol.py / tests/test_stream.py.
"""

from loadtest.protocol.codec import (
    AuthComplete,
    ClientEvent,
    ConvMessage,
    ErrorEvent,
    GenRequest,
    Message,
    Ping,
    Pong,
    ServerEvent,
    SetModel,
    SetModelComplete,
    UnknownEvent,
    decode_client_frame,
    decode_server_frame,
    decode_stream_frame,
    encode_gen,
    encode_ping,
    encode_server_event,
    encode_set_model,
)
from loadtest.protocol.stream import CHUNK, DONE, FAILED, FIRST_TOKEN, ClientStream

__all__ = [
    "CHUNK",
    "DONE",
    "FAILED",
    "FIRST_TOKEN",
    "AuthComplete",
    "ClientEvent",
    "ClientStream",
    "ConvMessage",
    "ErrorEvent",
    "GenRequest",
    "Message",
    "Ping",
    "Pong",
    "ServerEvent",
    "SetModel",
    "SetModelComplete",
    "UnknownEvent",
    "decode_client_frame",
    "decode_server_frame",
    "decode_stream_frame",
    "encode_gen",
    "encode_ping",
    "encode_server_event",
    "encode_set_model",
]
