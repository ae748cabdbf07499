#!/usr/bin/env python3
"""sse.py: the live graph over Server-Sent Events, with asyncio and the standard library.

    python3 sse.py /run/ring/sensor --port 8001      # then open http://127.0.0.1:8001/

Routes, as `filering serve` has them:
    /          the live graph page (index.html), told to use the event stream, with the
               defaults --unit, --min, --max and --window give (as `filering serve`'s)
    /events    the records as Server-Sent Events (text/event-stream), as they are appended:
               after Last-Event-ID (the header EventSource sends when it reconnects) or
               ?after=SEQ; or the last N records first with ?last=N; else new ones only
    /records   the JSON endpoint of ringweb.py (last=, after=, wait=)
    /healthz   {"ok": true, ...}, or 503 and why not (--stale: the newest record too old)
    /metrics   the ring in the Prometheus text format, filering_clients the open streams

Each record is one event, its id the sequence number:

    id: 4711
    data: {"seq":4711,"time_ns":1700000000123456789,"value":21.5}

Records the stream cannot deliver (retired by the ring before they were read, taken,
damaged) are announced as `event: lost` with data {"from":A,"to":B}; when the ring was
created anew (its sequence numbers start again) the stream says `event: restart`; a
`: ping` comment goes out every 15 seconds so that proxies keep the connection open.
This is the stream `filering serve` sends, so index.html reads either.

Every stream is a filering AsyncFollower: the ring directory is watched with inotify
through loop.add_reader, and nothing blocks the event loop but the reading of new records
(well under a millisecond per wake-up). A follower per client is simple and fine for
tens of clients; for thousands, share one follower between them (as `filering serve`
does).
"""

import argparse
import asyncio
import os
import sys
from urllib.parse import parse_qs, urlsplit

HERE = os.path.dirname(os.path.realpath(__file__))
sys.path.insert(0, HERE)

import ringweb  # noqa: E402
from ringweb import filering  # noqa: E402

PING = 15.0  # seconds between keep-alive comments
MAX_HEAD = 16384  # bytes of request line and headers accepted
MAX_BATCH = 1000  # records written at once
INDEX = os.path.join(HERE, "index.html")


def event(rec):
    """event returns the Server-Sent Event of one record, as bytes."""
    return ("id: %d\ndata: %s\n\n" % (rec.seq, ringweb.record_json(rec))).encode("utf-8")


def lost_event(loss):
    return b'event: lost\ndata: {"from":%d,"to":%d}\n\n' % (loss.first, loss.last)


class BadRequest(Exception):
    pass


def stream_start(ring, headers, query):
    """stream_start returns the follow() arguments for a stream, and whether to say restart first.

    Last-Event-ID (or ?after=SEQ) resumes after that sequence number; an id beyond the
    ring's newest comes from a ring since created anew: the stream restarts at 1.
    ?last=N starts with the last N records; with nothing, only records appended after
    the request are sent.
    """
    after = headers.get("last-event-id")
    if after is None and "after" in query:
        after = query["after"][-1]
    if after is not None:
        if not after.isdigit() or len(after) > 19:
            raise BadRequest("Last-Event-ID or after: want a sequence number")
        after = int(after)
        try:
            following = ring.next_seq()
        except filering.NoRingError:
            following = 1
        if after + 1 > following:
            return {"from_seq": 1}, True
        return {"from_seq": after + 1}, False
    last = query.get("last", ["0"])[-1]
    if not last.isdigit() or len(last) > 6:
        raise BadRequest("last: want a number of records")
    if int(last) > 0:
        return {"last": min(int(last), ringweb.MAX_LAST)}, False
    try:
        return {"from_seq": ring.next_seq()}, False  # records appended from now on
    except filering.NoRingError:
        return {"from_seq": 1}, False  # no ring yet: all its records are new


async def stream(ring, reader, writer, headers, query):
    """stream sends the records of ring as events until the client goes away."""
    loop = asyncio.get_running_loop()
    try:
        kw, restart = await loop.run_in_executor(None, stream_start, ring, headers, query)
    except BadRequest as e:
        await reply(writer, "400 Bad Request", "application/json; charset=utf-8", (ringweb._error(str(e)) + "\n").encode("utf-8"))
        return
    writer.write(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
        b"X-Accel-Buffering: no\r\nConnection: close\r\n\r\n" + (b"event: restart\ndata: {}\n\n" if restart else b"")
    )
    await writer.drain()
    pending = []

    def on_damage(err):
        sys.stderr.write("sse: %s\n" % err)  # its records are announced as lost

    gone = asyncio.ensure_future(reader.read(1))  # the client closes, or sends more: stop
    follower = ring.afollow(on_loss=lambda loss: pending.append(lost_event(loss)), on_damage=on_damage, **kw)
    try:
        while not gone.done():
            nxt = asyncio.ensure_future(follower.read(PING))
            await asyncio.wait([nxt, gone], return_when=asyncio.FIRST_COMPLETED)
            if not nxt.done():
                nxt.cancel()
                break
            rec = nxt.result()
            if rec is None:
                pending.append(b": ping\n\n")
            while rec is not None:
                if follower.restarted:
                    pending.append(b"event: restart\ndata: {}\n\n")
                pending.append(event(rec))
                rec = await follower.read(0) if len(pending) < MAX_BATCH else None
            writer.write(b"".join(pending))
            del pending[:]
            await writer.drain()
    except (ConnectionError, filering.Error) as e:
        if isinstance(e, filering.Error):
            sys.stderr.write("sse: %s\n" % e)
    finally:
        gone.cancel()
        follower.close()


async def reply(writer, status, content_type, body, head_only=False):
    writer.write(
        ("HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n"
         % (status, content_type, len(body))).encode("latin-1")
        + (b"" if head_only else body)
    )
    await writer.drain()


def page(defaults=None):
    """page returns index.html, told to read the event stream at "events", with defaults
    (ringweb.page_defaults)."""
    with open(INDEX, "rb") as f:
        return ringweb.page(f.read(), defaults, events=True)


class Options(object):
    """What a server serves: the ring, the page's defaults, /healthz's stale (seconds or
    None), and the count of event streams open."""

    def __init__(self, ring, page=None, stale=None):
        self.ring, self.page, self.stale, self.streams = ring, page, stale, 0


async def handle(opts, reader, writer):
    try:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError, ConnectionError):
            return
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3:
            await reply(writer, "400 Bad Request", "text/plain", b"bad request line\n")
            return
        method, target, _ = parts
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        url = urlsplit(target)
        query = parse_qs(url.query, max_num_fields=20)
        if method not in ("GET", "HEAD"):
            await reply(writer, "405 Method Not Allowed", "text/plain", b"use GET\n")
        elif url.path == "/events":
            opts.streams += 1
            try:
                await stream(filering.open(opts.ring), reader, writer, headers, query)
            finally:
                opts.streams -= 1
        elif url.path in ("/records", "/healthz", "/metrics"):
            loop = asyncio.get_running_loop()
            status, hdrs, body = await loop.run_in_executor(
                None, ringweb.route, opts.ring, url.path, url.query, method, opts.stale, opts.streams)
            await reply(writer, status, dict(hdrs)["Content-Type"], body)
        elif url.path in ("/", "/index.html"):
            await reply(writer, "200 OK", "text/html; charset=utf-8", page(opts.page), method == "HEAD")
        else:
            await reply(writer, "404 Not Found", "text/plain", b"not found\n")
    except ConnectionError:
        pass
    finally:
        writer.close()


async def serve(opts, host, port):
    """serve answers HTTP on host and port with opts (Options), forever."""
    server = await asyncio.start_server(lambda r, w: handle(opts, r, w), host, port, limit=MAX_HEAD)
    addr = server.sockets[0].getsockname()
    sys.stderr.write("serving %s on http://%s:%d/ (events at /events)\n" % (opts.ring, addr[0], addr[1]))
    sys.stderr.flush()
    async with server:
        await server.serve_forever()


def main(argv=None):
    ap = argparse.ArgumentParser(description="Serve a filering ring as Server-Sent Events, with the live graph page.")
    ap.add_argument("ring", nargs="?", default=os.environ.get("FILERING_RING") or ringweb.DEFAULT_RING, help="ring directory (default: $FILERING_RING or %s)" % ringweb.DEFAULT_RING)
    ap.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    ap.add_argument("--port", type=int, default=8001, help="port (default 8001)")
    ringweb.add_page_options(ap)
    args = ap.parse_args(argv)
    page_defaults, stale = ringweb.page_options(ap, args)
    try:
        asyncio.run(serve(Options(args.ring, page_defaults, stale), args.host, args.port))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
