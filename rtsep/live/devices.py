"""Audio devices for ``rtsep live``: listing, resolving by index or name, checking a rate, and
naming a stream's JACK ports after the sources they carry.

PortAudio (through sounddevice) is imported on demand: importing it enumerates devices, which
`rtsep file` and the library never need.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import DeviceError

if TYPE_CHECKING:
    from .routing import Route

__all__ = ["JackPortNamer", "check_rate", "find_device", "label", "list_devices", "native_rate", "short_error"]

KINDS = ("input", "output")


def _sd():
    """sounddevice, imported on demand: importing it starts PortAudio and enumerates devices."""
    try:
        import sounddevice as sd
    except OSError as exc:  # the PortAudio shared library is missing
        raise DeviceError(f"PortAudio is not available ({exc}); install libportaudio2") from None
    return sd


def list_devices() -> list[dict[str, Any]]:
    """Every PortAudio device: index, name, hostapi, max in/out channels, default rate, defaults."""
    sd = _sd()
    apis = sd.query_hostapis()
    default_in, default_out = _defaults(sd)
    out = []
    for dev in sd.query_devices():
        api = apis[dev["hostapi"]]
        out.append({
            "index": int(dev["index"]),
            "name": dev["name"],
            "hostapi": api["name"],
            "inputs": int(dev["max_input_channels"]),
            "outputs": int(dev["max_output_channels"]),
            "default_samplerate": float(dev["default_samplerate"]),
            "default_input": int(dev["index"]) == default_in,
            "default_output": int(dev["index"]) == default_out,
            "hostapi_default_input": int(dev["index"]) == api.get("default_input_device", -1),
            "hostapi_default_output": int(dev["index"]) == api.get("default_output_device", -1),
        })
    return out


def _defaults(sd) -> tuple[int, int]:
    """(default input index, default output index), -1 where there is none."""
    res = []
    for kind in KINDS:
        try:
            res.append(int(sd.query_devices(kind=kind)["index"]))
        except Exception:  # PortAudioError: no default device of this kind
            res.append(-1)
    return res[0], res[1]


def _channels(dev: dict[str, Any], kind: str) -> int:
    return int(dev["inputs" if kind == "input" else "outputs"])


def label(dev: dict[str, Any]) -> str:
    return f"{dev['index']} {dev['name']!r} ({dev['hostapi']})"


def find_device(spec: int | str | None, kind: str, channels: int = 1) -> dict[str, Any]:
    """Resolve a device by index, by case-insensitive substring of 'name, host API', or the default.

    Returns the device's entry from :func:`list_devices`. Raises DeviceError (one line) when no
    device matches, when several match equally well, or when the match has fewer than `channels`
    channels of `kind` ('input' or 'output').
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be 'input' or 'output', not {kind!r}")
    devices = list_devices()
    if not devices:
        raise DeviceError("PortAudio sees no audio devices")
    usable = [d for d in devices if _channels(d, kind) > 0]
    have = ", ".join(label(d) for d in usable) or "none"
    if spec is None or (isinstance(spec, str) and spec.strip() == ""):
        match = [d for d in devices if d[f"default_{kind}"]]
        if not match:
            raise DeviceError(f"no default {kind} device; choose one of: {have}")
        dev = match[0]
    elif isinstance(spec, int) or str(spec).strip().lstrip("-").isdigit():
        idx = int(spec)
        match = [d for d in devices if d["index"] == idx]
        if not match:
            raise DeviceError(f"no audio device with index {idx}; {kind} devices: {have}")
        dev = match[0]
    else:
        key = str(spec).strip().lower()
        exact = [d for d in usable if d["name"].lower() == key]
        sub = [d for d in usable if key in f"{d['name']}, {d['hostapi']}".lower()]
        match = exact or sub
        if not match:
            if any(key in f"{d['name']}, {d['hostapi']}".lower() for d in devices):
                raise DeviceError(f"{kind} device {spec!r} has no {kind} channels; {kind} devices: {have}")
            raise DeviceError(f"no {kind} device matching {spec!r}; {kind} devices: {have}")
        if len(match) > 1:  # prefer the system's default host API, then a host API's own default device
            default_api = next((d["hostapi"] for d in devices if d[f"default_{kind}"]), None)
            for prefer in ([d for d in match if d["hostapi"] == default_api],
                           [d for d in match if d[f"hostapi_default_{kind}"]]):
                if len(prefer) == 1:
                    match = prefer
                    break
            else:
                names = ", ".join(label(d) for d in match)
                raise DeviceError(f"{kind} device {spec!r} is ambiguous: {names}; give an index")
        dev = match[0]
    if _channels(dev, kind) < channels:
        raise DeviceError(f"{kind} device {label(dev)} has {_channels(dev, kind)} {kind} channel(s), "
                          f"{channels} needed")
    return dev


def native_rate(dev: dict[str, Any]) -> int:
    """The device's default sample rate (a JACK server's rate; a sound card's usual rate)."""
    return int(round(dev["default_samplerate"]))


def check_rate(dev: dict[str, Any], kind: str, channels: int, sample_rate: int) -> None:
    """DeviceError (one line) unless `dev` can open `channels` float32 channels of `kind` at `sample_rate`."""
    sd = _sd()
    check = sd.check_input_settings if kind == "input" else sd.check_output_settings
    try:
        check(device=dev["index"], channels=channels, dtype="float32", samplerate=sample_rate)
    except Exception as exc:
        verb = "record" if kind == "input" else "play"
        raise DeviceError(f"{kind} device {label(dev)} cannot {verb} {channels} channel(s) at {sample_rate} Hz "
                          f"({short_error(exc)}; its native rate is {native_rate(dev)} Hz, see --rate)") from None


def short_error(exc: BaseException) -> str:
    """An exception as one short line (PortAudio's messages span lines)."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


class JackPortNamer:
    """Alias PortAudio's JACK output ports with the sources they carry ('rtsep:drums', 'rtsep:bass+piano'),
    so a patchbay (qjackctl, Carla, jack_lsp -A) shows which stem is where. Optional: needs the JACK-Client
    package; any failure leaves the ports unnamed and the session untouched.

    Our ports: of the output ports named out_<n> that appeared between `before` and `name` (the stream
    registers them, so another PortAudio program on the same server is never renamed), those of the one
    client that registered as many as the stream has output channels (preferring PortAudio's name)."""

    def __init__(self, client, ports: set[str]) -> None:
        self.client = client
        self.ports = ports

    @classmethod
    def before(cls, out_dev: dict[str, Any]) -> JackPortNamer | None:
        if "jack" not in str(out_dev.get("hostapi", "")).lower():
            return None
        try:
            import jack

            client = jack.Client("rtsep-port-names", no_start_server=True)
        except Exception:  # no JACK-Client, or no server this library can reach
            return None
        try:
            return cls(client, {p.name for p in client.get_ports()})
        except Exception:
            client.close()
            return None

    def name(self, route: Route, output_channel: int) -> dict[str, str]:
        named: dict[str, str] = {}
        try:
            groups: dict[str, list] = {}
            for p in self.client.get_ports(is_audio=True, is_output=True):
                if p.name not in self.ports and p.shortname.startswith("out_") and p.shortname[4:].isdigit():
                    groups.setdefault(p.name.split(":", 1)[0], []).append(p)
            fits = [c for c, ps in groups.items() if len(ps) == output_channel - 1 + route.channels]
            if len(fits) > 1:
                fits = [c for c in fits if c.startswith("PortAudio")]
            if len(fits) == 1:
                for p in groups[fits[0]]:
                    c = int(p.shortname[4:]) - (output_channel - 1)
                    if 0 <= c < route.channels:
                        srcs = [s for k, s in enumerate(route.sources) if route.gains[c, k] != 0]
                        alias = "rtsep:" + ("+".join(srcs) or "silent")
                        if alias not in p.aliases:
                            p.set_alias(alias)
                        named[p.name] = alias
        except Exception:
            pass
        finally:
            self.close()
        return named

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:
            pass
