"""WebGPU and WebNN capability probe run in real headless Chromium.

Presence of an API object proves nothing: Chrome exposes ``navigator.gpu`` while
``requestAdapter()`` returns ``null`` when WebGPU is blocked (as in headless Chromium without
flags), a SwiftShader software adapter answers like a GPU, and ``navigator.ml`` only exists with
``--enable-features=WebMachineLearningNeuralNetwork``, where ``createContext()`` may still reject for
every device type. So the probe asks for an adapter and a context per WebNN device type, and the
verdict is drawn from what the browser handed back.

Two layers, so the decision logic is testable with exact inputs:

* `probe_browser` launches Chromium through Selenium, loads ``probe.html`` from a loopback HTTP
  server (WebGPU needs a secure context; ``http://127.0.0.1`` is one) and runs the page's
  ``fleetHwmonProbe`` with ``execute_async_script``. It never raises.
* `interpret_probe` turns the page's raw result (or a failure) into the result dict.

Result shape (``None`` means unknown, never "no")::

    {"status": "ok" | "unknown", "reason": str | None,
     "browser_version": str | None, "flags": [str, ...],
     "webgpu": {"available": bool | None, "software_only": bool,
                "adapter": {"vendor", "architecture", "device", "description": str | None,
                            "is_fallback_adapter": bool | None, "features": [str, ...],
                            "limits": {name: int | None}} | None,
                "reason": str | None},
     "webnn": {"available": bool | None,
               "devices": {"cpu": bool | None, "gpu": bool | None, "npu": bool | None},
               "reason": str | None}}
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any

__all__ = ["BASE_FLAGS", "WEBNN_DEVICE_TYPES", "interpret_probe", "launch_flags", "probe_browser"]

WEBNN_DEVICE_TYPES: tuple[str, ...] = ("cpu", "gpu", "npu")

BROWSER_NAMES: tuple[str, ...] = ("chromium", "chromium-browser", "google-chrome")
DEFAULT_DRIVER = "/usr/bin/chromedriver"

_ENABLE_FEATURES = "--enable-features="
# Vulkan lets Dawn find an adapter on Linux; WebMachineLearningNeuralNetwork creates navigator.ml.
_FEATURES: tuple[str, ...] = ("Vulkan", "WebMachineLearningNeuralNetwork")

BASE_FLAGS: tuple[str, ...] = (
    "--headless=new",
    "--no-sandbox",  # root in containers cannot use the setuid sandbox
    "--disable-dev-shm-usage",  # /dev/shm is 64 MiB in Docker; Chromium crashes when it fills
    # Keep the browser off the network: the probe only talks to its own loopback server.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-proxy-server",
    "--no-first-run",
    "--disable-default-apps",
    "--enable-unsafe-webgpu",  # WebGPU is blocklisted on Linux and in headless mode without it
    # Without a GPU, SwiftShader is the only adapter; enabling it lets the probe see and label it
    # as software instead of reporting "no WebGPU" for a browser that can in fact run it.
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
)

# Lower-case substrings of adapter info that mark a CPU renderer, whatever isFallbackAdapter says.
_SOFTWARE_MARKERS: tuple[str, ...] = (
    "swiftshader", "llvmpipe", "lavapipe", "softpipe", "microsoft basic render",
)

_LIMIT_NAMES: tuple[str, ...] = (
    "maxTextureDimension2D", "maxBufferSize", "maxStorageBufferBindingSize",
    "maxComputeWorkgroupStorageSize", "maxComputeInvocationsPerWorkgroup", "maxBindGroups",
)

_PAGE = "probe.html"
# Test seam: the script run against the page. arguments[0] is the per-step bound in ms, the last
# argument is WebDriver's completion callback.
_PROBE_SCRIPT = """
const done = arguments[arguments.length - 1];
if (typeof window.fleetHwmonProbe !== "function") {
  done({probe_error: "probe page did not define fleetHwmonProbe"});
  return;
}
window.fleetHwmonProbe(arguments[0]).then(done, (err) => done({probe_error: String(err)}));
"""


def launch_flags(extra_flags: Sequence[str] = ()) -> list[str]:
    """The Chromium flags for a probe, without ``--user-data-dir`` (added per launch).

    ``extra_flags`` are appended; their ``--enable-features=`` lists are merged into one switch,
    because Chromium honours only the last ``--enable-features`` on a command line.

    >>> launch_flags(["--enable-features=Foo"])[-1]
    '--enable-features=Vulkan,WebMachineLearningNeuralNetwork,Foo'
    """
    features = list(_FEATURES)
    flags = list(BASE_FLAGS)
    for flag in map(str, extra_flags):
        if flag.startswith(_ENABLE_FEATURES):
            features += [f for f in flag[len(_ENABLE_FEATURES):].split(",") if f and f not in features]
        else:
            flags.append(flag)
    return flags + [_ENABLE_FEATURES + ",".join(features)]


def probe_browser(
    executable_path: str | None = None,
    timeout_s: float = 20.0,
    driver_path: str | None = None,
    extra_flags: Sequence[str] = (),
) -> dict:
    """Probe WebGPU and WebNN in a real headless Chromium; never raises.

    Args:
        executable_path: the browser binary; default: the first of ``chromium``,
            ``chromium-browser``, ``google-chrome`` on ``PATH``.
        timeout_s: seconds allowed for the page load and, separately, for the probe script; each
            browser call inside the script (``requestAdapter()``, ``createContext()``) gets a third
            of it. Browser start-up is bounded by chromedriver's own launch timeout.
        driver_path: the chromedriver binary; default: ``chromedriver`` on ``PATH``, else
            ``/usr/bin/chromedriver``. Selenium Manager is never consulted (``SE_OFFLINE``), so
            the probe makes no network request.
        extra_flags: more Chromium flags, appended (``--enable-features`` lists are merged).

    Returns:
        The dict described in the module docstring. ``status`` is ``"unknown"``, with ``reason``,
        when no browser or driver is found (nothing is started), Selenium is missing, the browser
        fails to start, or the page or script does not finish in time ("... timeout ...").
        ``flags`` are the flags passed (or that would have been, when nothing started).

    Example:
        >>> result = probe_browser(timeout_s=10)  # doctest: +SKIP
        >>> result["webgpu"]["available"], result["webgpu"]["software_only"]  # doctest: +SKIP
        (True, True)
    """
    flags = launch_flags(extra_flags)
    browser = _find_executable(executable_path, BROWSER_NAMES)
    if browser is None:
        where = executable_path or " / ".join(BROWSER_NAMES) + " on PATH"
        return interpret_probe(None, browser_version=None, flags=flags,
                               error=f"browser not found ({where}); nothing was started")
    driver_file = (_find_executable(driver_path, ()) if driver_path
                   else _find_executable(None, ("chromedriver",)) or _find_executable(DEFAULT_DRIVER, ()))
    if driver_file is None:
        where = driver_path or f"chromedriver on PATH or {DEFAULT_DRIVER}"
        return interpret_probe(None, browser_version=None, flags=flags,
                               error=f"chromedriver not found ({where}); nothing was started")
    try:
        from selenium import webdriver
        from selenium.common.exceptions import TimeoutException
        from selenium.webdriver.chrome.service import Service
    except ImportError as err:
        return interpret_probe(None, browser_version=None, flags=flags,
                               error=f"selenium is not installed ({err}); "
                                     "pip install '.[browser]' in the project's folder")

    # Selenium Manager would otherwise try to download a driver or browser when one is missing.
    os.environ.setdefault("SE_OFFLINE", "true")
    version: str | None = None
    stage = "starting the browser"
    driver = None
    profile: str | None = None
    try:
        profile = tempfile.mkdtemp(prefix="fleet-hwmon-chromium-")
        flags = flags + [f"--user-data-dir={profile}"]
        options = webdriver.ChromeOptions()
        options.binary_location = browser
        for flag in flags:
            options.add_argument(flag)
        driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_file))
        version = driver.capabilities.get("browserVersion")
        with _serve_page(_page_bytes()) as url:
            stage = "loading the probe page"
            driver.set_page_load_timeout(timeout_s)
            driver.get(url)
            stage = "running the probe script (execute_async_script)"
            driver.set_script_timeout(timeout_s)
            raw = driver.execute_async_script(_PROBE_SCRIPT, max(1, int(timeout_s * 1000 / 3)))
        return interpret_probe(raw, browser_version=version, flags=flags)
    except TimeoutException:
        return interpret_probe(None, browser_version=version, flags=flags,
                               error=f"timeout while {stage}: no result within {timeout_s:g} s")
    except Exception as err:  # noqa: BLE001 (a capability probe must not take the caller down)
        return interpret_probe(None, browser_version=version, flags=flags,
                               error=f"{stage} failed: {_one_line(err)}")
    finally:
        if driver is not None:
            with contextlib.suppress(Exception):
                driver.quit()
        if profile is not None:
            shutil.rmtree(profile, ignore_errors=True)


def interpret_probe(
    raw: dict | None,
    *,
    browser_version: str | None,
    flags: Sequence[str],
    error: str | None = None,
) -> dict:
    """Turn the probe page's raw result into the capability result (pure, no I/O).

    Args:
        raw: what ``fleetHwmonProbe`` resolved to::

            {"webgpu": {"present": bool, "adapter": {"vendor", "architecture", "device",
                        "description", "is_fallback_adapter", "features", "limits"} | None,
                        "error": str | None, "timed_out": bool},
             "webnn": {"present": bool,
                       "devices": {"cpu": {"ok": bool, "error": str | None, "timed_out": bool}, ...}}}

            ``None`` (or a dict with ``probe_error``) when the probe produced nothing.
        browser_version: ``driver.capabilities["browserVersion"]``, recorded as is.
        flags: the launch flags, recorded as a list.
        error: why the probe failed; when given, the result is ``"unknown"`` whatever ``raw`` is.

    Returns:
        The dict described in the module docstring. WebGPU counts as available only with an
        adapter; a fallback or SwiftShader-like adapter is ``software_only``. WebNN counts as
        available only when some device type created a context: ``False`` when ``navigator.ml``
        is missing or every ``createContext()`` rejected, ``None`` when none succeeded and some
        timed out. A device that rejected is ``False``, one that timed out ``None``.

    Example:
        >>> interpret_probe({"webgpu": {"present": False}, "webnn": {"present": False}},
        ...                 browser_version="126.0", flags=[])["webgpu"]["available"]
        False
    """
    if error is None and not isinstance(raw, dict):
        error = "probe returned no result"
    elif error is None and raw.get("probe_error"):
        error = f"probe script failed: {raw['probe_error']}"
    if error is not None:
        return {
            "status": "unknown", "reason": error,
            "browser_version": browser_version, "flags": list(flags),
            "webgpu": {"available": None, "software_only": False, "adapter": None, "reason": error},
            "webnn": {"available": None, "devices": dict.fromkeys(WEBNN_DEVICE_TYPES), "reason": error},
        }
    return {
        "status": "ok", "reason": None,
        "browser_version": browser_version, "flags": list(flags),
        "webgpu": _interpret_webgpu(raw.get("webgpu") or {}),
        "webnn": _interpret_webnn(raw.get("webnn") or {}),
    }


def _interpret_webgpu(raw: dict) -> dict:
    def verdict(available: bool | None, reason: str | None, adapter: dict | None = None,
                software: bool = False) -> dict:
        return {"available": available, "software_only": software, "adapter": adapter, "reason": reason}

    if not raw.get("present"):
        return verdict(False, "navigator.gpu is undefined: WebGPU is disabled or unsupported")
    if raw.get("error"):
        # A timeout says nothing either way; a rejection is the browser refusing.
        return verdict(None if raw.get("timed_out") else False, str(raw["error"]))
    if not isinstance(raw.get("adapter"), dict):
        return verdict(False, "navigator.gpu exists but requestAdapter() returned null: no usable adapter")
    adapter = _adapter(raw["adapter"])
    if _is_software(adapter):
        name = adapter["architecture"] or adapter["description"] or adapter["vendor"] or "fallback"
        return verdict(True, f"software adapter only ({name}); no hardware adapter", adapter, True)
    return verdict(True, None, adapter)


def _adapter(raw: dict) -> dict:
    def text(key: str) -> str | None:
        value = raw.get(key)
        return value if isinstance(value, str) and value else None  # adapter info uses "" for unknown

    fallback = raw.get("is_fallback_adapter")
    limits = raw.get("limits") if isinstance(raw.get("limits"), dict) else {}
    return {
        "vendor": text("vendor"),
        "architecture": text("architecture"),
        "device": text("device"),
        "description": text("description"),
        "is_fallback_adapter": fallback if isinstance(fallback, bool) else None,
        "features": sorted(str(f) for f in raw.get("features") or ()),
        "limits": {name: _int_or_none(limits.get(name)) for name in _LIMIT_NAMES},
    }


def _is_software(adapter: dict) -> bool:
    if adapter["is_fallback_adapter"]:
        return True
    # Older Chrome leaves isFallbackAdapter unset for SwiftShader, so the names decide too.
    names = " ".join(adapter[k] or "" for k in ("vendor", "architecture", "device", "description")).lower()
    return any(marker in names for marker in _SOFTWARE_MARKERS)


def _interpret_webnn(raw: dict) -> dict:
    if not raw.get("present"):
        return {"available": False, "devices": dict.fromkeys(WEBNN_DEVICE_TYPES, False),
                "reason": "navigator.ml is undefined: WebNN needs "
                          "--enable-features=WebMachineLearningNeuralNetwork or is unsupported"}
    reported = raw.get("devices") if isinstance(raw.get("devices"), dict) else {}
    devices: dict[str, bool | None] = {}
    failures: list[str] = []
    for kind in WEBNN_DEVICE_TYPES:
        step = reported.get(kind)
        if not isinstance(step, dict) or step.get("timed_out"):
            devices[kind] = None
        else:
            devices[kind] = bool(step.get("ok"))
        if isinstance(step, dict) and not step.get("ok"):
            failures.append(str(step.get("error") or f"{kind}: no context"))
        elif step is None:
            failures.append(f"{kind}: not probed")
    values = list(devices.values())
    available = True if True in values else None if None in values else False
    reason = "; ".join(failures) or None
    if available is not True:
        reason = f"navigator.ml exists but no device type gave a context: {reason}"
    return {"available": available, "devices": devices, "reason": reason}


def _find_executable(path: str | None, names: Sequence[str]) -> str | None:
    """``path`` when it is an executable file, else the first of ``names`` on ``PATH``."""
    if path:
        return path if os.path.isfile(path) and os.access(path, os.X_OK) else None
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return None


def _page_bytes() -> bytes:
    return resources.files(__package__).joinpath(_PAGE).read_bytes()


class _PageHandler(BaseHTTPRequestHandler):
    """Serves the probe page at ``/probe.html`` and nothing else."""

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] not in ("/", f"/{_PAGE}"):
            self.send_error(404)
            return
        body = self.server.page  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per request on stderr would only clutter worker logs


@contextlib.contextmanager
def _serve_page(page: bytes) -> Iterator[str]:
    """Serve ``page`` on 127.0.0.1 (an ephemeral port) in a thread; yields its URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _PageHandler)
    server.daemon_threads = True
    server.page = page  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              name="browser-probe-page", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/{_PAGE}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return int(value)


def _one_line(err: BaseException) -> str:
    # Selenium messages carry a multi-line native stack trace; its first line says what happened.
    text = getattr(err, "msg", None) or str(err) or ""
    first = text.strip().splitlines()[0] if text.strip() else ""
    return f"{type(err).__name__}: {first}" if first else type(err).__name__
