#!/usr/bin/env python3
"""Records what a NetBird client and meshplane-server say to each other.

    scripts/netbird-capture.py LISTEN UPSTREAM OUT.jsonl

A TCP proxy from 127.0.0.1:LISTEN to 127.0.0.1:UPSTREAM (the server) that
appends every gRPC message of its HTTP/2 connections to OUT.jsonl, one JSON
object a line: connection and stream number, direction (c2s, s2c), method
path, the message as hex, or the call's grpc-status. Other connections (the
relay's WebSocket) pass through unrecorded. Point the client at the proxy
(`netbird up -m http://127.0.0.1:LISTEN`): the server then advertises the
proxy's address for signal and relay too, so they pass through it as well.
Needs the `hpack` package (pip install hpack). See
conformance/netbird/README.md."""
import asyncio, json, sys, time
import hpack

LISTEN, UPSTREAM, OUT = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
out = open(OUT, "a")
conn_ids = iter(range(1, 10**9))

def log(**kw):
    kw["t"] = time.time()
    out.write(json.dumps(kw) + "\n"); out.flush()

class Side:
    def __init__(self, conn, direction, paths):
        self.conn, self.dir, self.paths = conn, direction, paths
        self.buf = b""; self.dec = hpack.Decoder(); self.dec.max_allowed_table_size = 1 << 20
        self.h2 = None; self.hdr = {}; self.data = {}
    def feed(self, chunk):
        self.buf += chunk
        if self.h2 is None:
            if self.dir == "c2s":
                if len(self.buf) < len(PREFACE): return
                self.h2 = self.buf.startswith(PREFACE)
                if self.h2: self.buf = self.buf[len(PREFACE):]
            else:
                self.h2 = self.paths.get("h2", False)
        if not self.h2: self.buf = b""; return
        while len(self.buf) >= 9:
            n = int.from_bytes(self.buf[:3], "big"); typ = self.buf[3]; flags = self.buf[4]
            sid = int.from_bytes(self.buf[5:9], "big") & 0x7fffffff
            if len(self.buf) < 9 + n: return
            payload = self.buf[9:9+n]; self.buf = self.buf[9+n:]
            if typ in (0, 1) and flags & 0x8:  # padded
                pad = payload[0]; payload = payload[1:len(payload)-pad]
            if typ == 1:
                if flags & 0x20: payload = payload[5:]
                self.hdr[sid] = payload
                if flags & 0x4: self.headers(sid, self.hdr.pop(sid))
            elif typ == 9:
                self.hdr[sid] += payload
                if flags & 0x4: self.headers(sid, self.hdr.pop(sid))
            elif typ == 0:
                d = self.data.get(sid, b"") + payload
                while len(d) >= 5:
                    m = int.from_bytes(d[1:5], "big")
                    if len(d) < 5 + m: break
                    log(conn=self.conn, stream=sid, dir=self.dir, path=self.paths.get(sid),
                        msg=d[5:5+m].hex())
                    d = d[5+m:]
                self.data[sid] = d
    def headers(self, sid, block):
        hs = dict((k.decode() if isinstance(k, bytes) else k, v.decode() if isinstance(v, bytes) else v)
                  for k, v in self.dec.decode(block, raw=True))
        if self.dir == "c2s" and ":path" in hs:
            self.paths[sid] = hs[":path"]
        if "grpc-status" in hs:
            log(conn=self.conn, stream=sid, dir=self.dir, path=self.paths.get(sid),
                status=int(hs["grpc-status"]), message=hs.get("grpc-message", ""))

async def pipe(reader, writer, side):
    try:
        while True:
            chunk = await reader.read(65536)
            if not chunk: break
            try: side.feed(chunk)
            except Exception as e: log(error=repr(e), conn=side.conn); side.h2 = False
            writer.write(chunk); await writer.drain()
    except Exception: pass
    finally:
        try: writer.close()
        except Exception: pass

async def handle(cr, cw):
    ur, uw = await asyncio.open_connection("127.0.0.1", UPSTREAM)
    conn = next(conn_ids); paths = {}
    c2s = Side(conn, "c2s", paths); s2c = Side(conn, "s2c", paths)
    orig = c2s.feed
    def feed(chunk):
        orig(chunk); paths["h2"] = bool(c2s.h2)
    c2s.feed = feed
    await asyncio.gather(pipe(cr, uw, c2s), pipe(ur, cw, s2c))

async def main():
    srv = await asyncio.start_server(handle, "127.0.0.1", LISTEN)
    async with srv: await srv.serve_forever()
asyncio.run(main())
