"""A minimal, fast OpenAI-shaped upstream for benchmarks (raw asyncio protocol, keep-alive, no framework).

POST */chat/completions -> a fixed JSON answer (or an SSE stream when the body has "stream": true);
GET */health and */models -> 200. Usage: python bench/fast_upstream.py PORT
"""
import asyncio
import sys

try:
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None

ANSWER = (b'{"id":"b-1","object":"chat.completion","created":0,"model":"bench","choices":[{"index":0,'
          b'"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],'
          b'"usage":{"prompt_tokens":9,"completion_tokens":1,"total_tokens":10}}')
OK_RESP = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " + str(len(ANSWER)).encode()
           + b"\r\n\r\n" + ANSWER)
SMALL = b'{"status":"ok"}'
SMALL_RESP = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\r\n" + SMALL
CHUNK = (b'data: {"id":"b-1","object":"chat.completion.chunk","model":"bench","choices":[{"index":0,'
         b'"delta":{"content":"tok "},"finish_reason":null}]}\n\n')
USAGE = (b'data: {"id":"b-1","object":"chat.completion.chunk","model":"bench","choices":[],'
         b'"usage":{"prompt_tokens":9,"completion_tokens":8,"total_tokens":17}}\n\n')
STREAM_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"


def chunked(b: bytes) -> bytes:
    return f"{len(b):x}\r\n".encode() + b + b"\r\n"


class Proto(asyncio.Protocol):
    def connection_made(self, transport):
        self.t = transport
        self.buf = b""

    def data_received(self, data):
        self.buf += data
        while True:
            i = self.buf.find(b"\r\n\r\n")
            if i < 0:
                return
            head = self.buf[:i]
            n = 0
            for line in head.split(b"\r\n")[1:]:
                if line[:15].lower() == b"content-length:":
                    n = int(line[15:])
            if len(self.buf) < i + 4 + n:
                return
            body = self.buf[i + 4:i + 4 + n]
            self.buf = self.buf[i + 4 + n:]
            first = head.split(b"\r\n", 1)[0]
            if first.startswith(b"POST") and b'"stream":true' in body.replace(b" ", b""):
                asyncio.get_running_loop().create_task(self.stream(b"include_usage" in body))
            elif first.startswith(b"POST"):
                self.t.write(OK_RESP)
            else:
                self.t.write(SMALL_RESP)

    async def stream(self, usage: bool):
        t = self.t
        t.write(STREAM_HEAD + chunked(CHUNK))
        for _ in range(7):
            await asyncio.sleep(0.001)
            t.write(chunked(CHUNK))
        if usage:
            t.write(chunked(USAGE))
        t.write(chunked(b"data: [DONE]\n\n") + b"0\r\n\r\n")


async def main(port: int):
    loop = asyncio.get_running_loop()
    srv = await loop.create_server(Proto, "127.0.0.1", port, backlog=1024)
    print("ready", flush=True)
    async with srv:
        await srv.serve_forever()


if __name__ == "__main__":
    if uvloop:
        uvloop.install()
    asyncio.run(main(int(sys.argv[1])))
