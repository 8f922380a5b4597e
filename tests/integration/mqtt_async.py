"""A small asyncio MQTT 3.1.1 / 5.0 client on raw packets, for tests that run many clients at
once in one event loop (paho's thread per client does not fit a storm of connections)."""
import asyncio
import struct


def varint(n):
    out = b""
    while True:
        b, n = n % 128, n // 128
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out


def read_varint(b, at):
    n, shift = 0, 0
    while True:
        n |= (b[at] & 0x7F) << shift
        shift += 7
        at += 1
        if not b[at - 1] & 0x80:
            return n, at


def utf8(s):
    s = s.encode() if isinstance(s, str) else s
    return struct.pack("!H", len(s)) + s


def packet(first, body):
    return bytes([first]) + varint(len(body)) + body


class Client:
    """One connection. `version` is 4 (3.1.1) or 5."""

    def __init__(self, reader, writer, version):
        self.r, self.w, self.version = reader, writer, version
        self.session_present = False
        self.next_id = 1

    @classmethod
    async def connect(cls, port, client_id, version=4, clean=True, expiry=0, keep_alive=30,
                      props=b"", timeout=5, username=None, password=None):
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port),
                                                timeout)
        c = cls(reader, writer, version)
        flags = (0x02 if clean else 0x00) | (0x80 if username is not None else 0) | (
            0x40 if password is not None else 0)
        body = utf8("MQTT") + bytes([version, flags]) + struct.pack("!H", keep_alive)
        if version == 5:
            if expiry:
                props += b"\x11" + struct.pack("!I", expiry)
            body += varint(len(props)) + props
        body += utf8(client_id)
        if username is not None:
            body += utf8(username)
        if password is not None:
            body += utf8(password)
        writer.write(packet(0x10, body))
        kind, ack = await asyncio.wait_for(c.read(), timeout)
        if kind != 0x20:
            raise ConnectionError(f"expected CONNACK, got {kind!r}")
        c.connack_code = ack[1]
        c.session_present = bool(ack[0] & 1)
        if c.connack_code != 0:
            raise ConnectionRefusedError(f"CONNACK {ack[1]:#x}")
        return c

    def _props(self):
        return b"\x00" if self.version == 5 else b""

    async def read(self):
        """(first byte, body); (None, b"") when the stream ended."""
        try:
            first = await self.r.readexactly(1)
            n, shift = 0, 0
            while True:
                b = (await self.r.readexactly(1))[0]
                n |= (b & 0x7F) << shift
                shift += 7
                if not b & 0x80:
                    break
            body = await self.r.readexactly(n) if n else b""
        except (asyncio.IncompleteReadError, ConnectionError):
            return None, b""
        return first[0], body

    def subscribe(self, filters, qos=1):
        """Sends SUBSCRIBE for `filters` (the SUBACK comes through read())."""
        pid = self._id()
        body = struct.pack("!H", pid) + self._props()
        for f in filters:
            body += utf8(f) + bytes([qos])
        self.w.write(packet(0x82, body))
        return pid

    def unsubscribe(self, filters):
        pid = self._id()
        body = struct.pack("!H", pid) + self._props()
        for f in filters:
            body += utf8(f)
        self.w.write(packet(0xA2, body))
        return pid

    def publish(self, topic, payload, qos=0, retain=False):
        first = 0x30 | (qos << 1) | (1 if retain else 0)
        body = utf8(topic)
        pid = 0
        if qos:
            pid = self._id()
            body += struct.pack("!H", pid)
        body += self._props() + payload
        self.w.write(packet(first, body))
        return pid

    def ack(self, kind, pid):
        """PUBACK (0x40), PUBREC (0x50), PUBREL (0x62) or PUBCOMP (0x70) for `pid`."""
        self.w.write(packet(kind, struct.pack("!H", pid)))

    def parse_publish(self, first, body):
        """(topic, packet id or 0, payload) of a PUBLISH."""
        n = struct.unpack("!H", body[:2])[0]
        topic, at = body[2:2 + n].decode(), 2 + n
        pid = 0
        if first & 0x06:
            pid = struct.unpack("!H", body[at:at + 2])[0]
            at += 2
        if self.version == 5:
            plen, at = read_varint(body, at)
            at += plen
        return topic, pid, body[at:]

    def disconnect(self):
        self.w.write(b"\xe0\x00")

    async def close(self):
        self.w.close()
        try:
            await self.w.wait_closed()
        except (ConnectionError, OSError):
            pass

    def abort(self):
        """Drops the connection without DISCONNECT (the agent sees it end)."""
        self.w.transport.abort()

    def _id(self):
        pid = self.next_id
        self.next_id = pid % 65535 + 1
        return pid
