"""Browser capability probe (C32): exact raw page results through `interpret_probe`, and real
headless Chromium runs for what this machine can produce (a hanging script, the full probe).

The adapter situations (no adapter, a hardware adapter, a rejected WebNN GPU context) cannot be
produced on a GPU-less host, so they are fed to `interpret_probe` as the page would report them.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import time
import urllib.request

import pytest

from fleet_hwmon.capabilities import browser
from fleet_hwmon.capabilities.browser import interpret_probe, launch_flags, probe_browser

VERSION = "156.0.8078.108"
FLAGS = ["--headless=new", "--enable-unsafe-webgpu", "--enable-features=Vulkan,WebMachineLearningNeuralNetwork"]
NO_LIMITS = dict.fromkeys(browser._LIMIT_NAMES)

GPU_REJECTED = ("navigator.ml.createContext({deviceType: 'gpu'}) rejected: NotSupportedError: "
                "Failed to execute 'createContext' on 'ML': GPU device is not supported.")
NPU_REJECTED = ("navigator.ml.createContext({deviceType: 'npu'}) rejected: NotSupportedError: "
                "Failed to execute 'createContext' on 'ML': NPU device is not supported.")
OK = {"ok": True, "error": None, "timed_out": False}
WEBNN_ALL_OK = {"present": True, "devices": {"cpu": OK, "gpu": OK, "npu": OK}}
WEBNN_ALL_OK_RESULT = {"available": True, "devices": {"cpu": True, "gpu": True, "npu": True}, "reason": None}
NO_GPU_API = {"present": False, "adapter": None, "error": None, "timed_out": False}
NO_GPU_API_RESULT = {"available": False, "software_only": False, "adapter": None,
                     "reason": "navigator.gpu is undefined: WebGPU is disabled or unsupported"}

_HAVE_BROWSER = any(shutil.which(name) for name in browser.BROWSER_NAMES)
_HAVE_DRIVER = bool(shutil.which("chromedriver") or os.access(browser.DEFAULT_DRIVER, os.X_OK))
requires_chromium = pytest.mark.skipif(
    not (_HAVE_BROWSER and _HAVE_DRIVER), reason="needs chromium (or google-chrome) and chromedriver on PATH")


def ok_result(webgpu: dict, webnn: dict) -> dict:
    return {"status": "ok", "reason": None, "browser_version": VERSION, "flags": FLAGS,
            "webgpu": webgpu, "webnn": webnn}


def interpret(webgpu: dict, webnn: dict) -> dict:
    raw = {"secure_context": True, "webgpu": webgpu, "webnn": webnn}
    return interpret_probe(raw, browser_version=VERSION, flags=FLAGS)


# --- C32 situations with exact inputs ------------------------------------------------------------

def test_a_gpu_api_present_but_request_adapter_null_is_unavailable():
    result = interpret({"present": True, "adapter": None, "error": None, "timed_out": False}, WEBNN_ALL_OK)
    assert result == ok_result(
        {"available": False, "software_only": False, "adapter": None,
         "reason": "navigator.gpu exists but requestAdapter() returned null: no usable adapter"},
        WEBNN_ALL_OK_RESULT)


def test_b_gpu_api_undefined_is_unavailable():
    assert interpret(NO_GPU_API, WEBNN_ALL_OK) == ok_result(NO_GPU_API_RESULT, WEBNN_ALL_OK_RESULT)


SWIFTSHADER_RAW = {
    "vendor": "google", "architecture": "swiftshader", "device": "", "description": "",
    "is_fallback_adapter": True, "features": ["timestamp-query", "float32-filterable"],
    "limits": {"maxBufferSize": 268435456, "maxBindGroups": 4}, "info_error": None,
}
SWIFTSHADER_ADAPTER = {
    "vendor": "google", "architecture": "swiftshader", "device": None, "description": None,
    "is_fallback_adapter": True, "features": ["float32-filterable", "timestamp-query"],
    "limits": {**NO_LIMITS, "maxBufferSize": 268435456, "maxBindGroups": 4},
}


def test_c_swiftshader_fallback_adapter_is_software_only():
    result = interpret({"present": True, "adapter": SWIFTSHADER_RAW, "error": None, "timed_out": False},
                       WEBNN_ALL_OK)
    assert result == ok_result(
        {"available": True, "software_only": True, "adapter": SWIFTSHADER_ADAPTER,
         "reason": "software adapter only (swiftshader); no hardware adapter"},
        WEBNN_ALL_OK_RESULT)


@pytest.mark.parametrize("adapter", [
    {**SWIFTSHADER_RAW, "is_fallback_adapter": None},  # versions that leave the flag unset
    {"vendor": "", "architecture": "", "device": "", "description": "SwiftShader Device (Subzero)",
     "is_fallback_adapter": False, "features": [], "limits": {}},
], ids=["google-swiftshader-no-flag", "swiftshader-description"])
def test_c_swiftshader_names_mark_software_even_without_fallback_flag(adapter):
    webgpu = interpret({"present": True, "adapter": adapter, "error": None, "timed_out": False},
                       WEBNN_ALL_OK)["webgpu"]
    assert (webgpu["available"], webgpu["software_only"]) == (True, True)


def test_c_hardware_adapter_is_kept_apart_from_software():
    raw = {"vendor": "nvidia", "architecture": "ampere", "device": "", "description": "",
           "is_fallback_adapter": False, "features": ["shader-f16"], "limits": {"maxBindGroups": 4}}
    webgpu = interpret({"present": True, "adapter": raw, "error": None, "timed_out": False},
                       WEBNN_ALL_OK)["webgpu"]
    assert webgpu == {
        "available": True, "software_only": False, "reason": None,
        "adapter": {"vendor": "nvidia", "architecture": "ampere", "device": None, "description": None,
                    "is_fallback_adapter": False, "features": ["shader-f16"],
                    "limits": {**NO_LIMITS, "maxBindGroups": 4}},
    }


def test_d_ml_api_undefined_is_unavailable():
    result = interpret(NO_GPU_API, {"present": False, "devices": {}})
    assert result == ok_result(NO_GPU_API_RESULT, {
        "available": False, "devices": {"cpu": False, "gpu": False, "npu": False},
        "reason": "navigator.ml is undefined: WebNN needs "
                  "--enable-features=WebMachineLearningNeuralNetwork or is unsupported"})


def test_e_gpu_context_rejected_leaves_webnn_available_with_gpu_false():
    webnn = {"present": True, "devices": {
        "cpu": OK,
        "gpu": {"ok": False, "error": GPU_REJECTED, "timed_out": False},
        "npu": {"ok": False, "error": NPU_REJECTED, "timed_out": False},
    }}
    assert interpret(NO_GPU_API, webnn) == ok_result(NO_GPU_API_RESULT, {
        "available": True, "devices": {"cpu": True, "gpu": False, "npu": False},
        "reason": f"{GPU_REJECTED}; {NPU_REJECTED}"})


def test_e_every_context_rejected_is_not_support():
    # An API object whose every createContext() rejects is what headless Chromium on Linux has.
    cpu_rejected = GPU_REJECTED.replace("'gpu'", "'cpu'")
    webnn = {"present": True, "devices": {
        kind: {"ok": False, "error": error, "timed_out": False}
        for kind, error in (("cpu", cpu_rejected), ("gpu", GPU_REJECTED), ("npu", NPU_REJECTED))}}
    assert interpret(NO_GPU_API, webnn)["webnn"] == {
        "available": False, "devices": {"cpu": False, "gpu": False, "npu": False},
        "reason": f"navigator.ml exists but no device type gave a context: "
                  f"{cpu_rejected}; {GPU_REJECTED}; {NPU_REJECTED}"}


def test_f_script_never_resolves_is_unknown():
    error = "timeout while running the probe script (execute_async_script): no result within 3 s"
    assert interpret_probe(None, browser_version=VERSION, flags=FLAGS, error=error) == {
        "status": "unknown", "reason": error, "browser_version": VERSION, "flags": FLAGS,
        "webgpu": {"available": None, "software_only": False, "adapter": None, "reason": error},
        "webnn": {"available": None, "devices": {"cpu": None, "gpu": None, "npu": None}, "reason": error},
    }


def test_steps_that_time_out_inside_the_page_are_unknown_not_false():
    timed_out = "navigator.gpu.requestAdapter() timed out after 1000 ms"
    gpu_timed_out = "navigator.ml.createContext({deviceType: 'gpu'}) timed out after 1000 ms"
    result = interpret(
        {"present": True, "adapter": None, "error": timed_out, "timed_out": True},
        {"present": True, "devices": {
            "cpu": {"ok": False, "error": GPU_REJECTED.replace("'gpu'", "'cpu'"), "timed_out": False},
            "gpu": {"ok": False, "error": gpu_timed_out, "timed_out": True},
            "npu": {"ok": False, "error": NPU_REJECTED, "timed_out": False}}})
    assert result["status"] == "ok"
    assert result["webgpu"] == {"available": None, "software_only": False, "adapter": None,
                                "reason": timed_out}
    assert result["webnn"]["available"] is None
    assert result["webnn"]["devices"] == {"cpu": False, "gpu": None, "npu": False}


def test_page_side_failure_is_unknown():
    result = interpret_probe({"probe_error": "TypeError: boom"}, browser_version=VERSION, flags=FLAGS)
    assert (result["status"], result["reason"]) == ("unknown", "probe script failed: TypeError: boom")
    assert result["webgpu"]["available"] is None and result["webnn"]["available"] is None


# --- launch set-up without a browser ------------------------------------------------------------

def test_launch_flags_merge_enable_features():
    flags = launch_flags(["--enable-features=Foo,Vulkan", "--lang=en"])
    assert flags[:len(browser.BASE_FLAGS)] == list(browser.BASE_FLAGS)
    assert [f for f in flags if f.startswith("--enable-features=")] == [
        "--enable-features=Vulkan,WebMachineLearningNeuralNetwork,Foo"]
    assert "--lang=en" in flags


def test_missing_driver_is_unknown_without_starting_anything():
    started = time.monotonic()
    # Any executable stands in for the browser: the driver check must fail before a launch.
    result = probe_browser(executable_path=sys.executable, driver_path="/nonexistent/chromedriver")
    assert time.monotonic() - started < 1.0
    assert result["status"] == "unknown"
    assert result["reason"] == "chromedriver not found (/nonexistent/chromedriver); nothing was started"
    assert result["browser_version"] is None
    assert result["flags"] == launch_flags()
    assert result["webgpu"]["available"] is None and result["webnn"]["available"] is None


def test_missing_browser_is_unknown():
    result = probe_browser(executable_path="/nonexistent/chromium")
    assert result["status"] == "unknown"
    assert result["reason"].startswith("browser not found (/nonexistent/chromium)")


def test_probe_page_is_served_on_loopback():
    with browser._serve_page(browser._page_bytes()) as url:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/probe\.html", url)
        with urllib.request.urlopen(url, timeout=5) as response:
            assert b"window.fleetHwmonProbe" in response.read()


# --- real headless Chromium ----------------------------------------------------------------------

def _user_data_dir(flags: list[str]) -> str:
    (flag,) = [f for f in flags if f.startswith("--user-data-dir=")]
    return flag.split("=", 1)[1]


@pytest.mark.browser
@pytest.mark.timeout(60)
@requires_chromium
def test_real_probe_reports_what_this_host_has():
    result = probe_browser(timeout_s=15)
    assert result["status"] == "ok", result["reason"]
    assert re.fullmatch(r"\d+(\.\d+)+", result["browser_version"])
    assert result["flags"][:-1] == launch_flags()
    assert not os.path.exists(_user_data_dir(result["flags"]))  # the temporary profile is removed

    webgpu = result["webgpu"]
    assert webgpu["available"] in (True, False)
    assert (webgpu["adapter"] is not None) == webgpu["available"]
    if webgpu["adapter"] is not None:
        adapter = webgpu["adapter"]
        if "swiftshader" in f"{adapter['architecture']} {adapter['description']}".lower():
            assert webgpu["software_only"] is True
        if not _host_has_gpu():
            assert webgpu["software_only"] is True, f"hardware adapter claimed on a GPU-less host: {adapter}"

    webnn = result["webnn"]
    assert set(webnn["devices"]) == {"cpu", "gpu", "npu"}
    assert webnn["available"] == (True in webnn["devices"].values())
    if not webnn["available"]:
        assert webnn["reason"]


@pytest.mark.browser
@pytest.mark.timeout(60)
@requires_chromium
def test_real_webnn_without_navigator_ml_is_unavailable():
    result = probe_browser(timeout_s=15, extra_flags=["--disable-blink-features=MachineLearningNeuralNetwork"])
    assert result["status"] == "ok", result["reason"]
    assert result["webnn"]["available"] is False
    assert result["webnn"]["reason"].startswith("navigator.ml is undefined")


@pytest.mark.browser
@pytest.mark.timeout(60)
@requires_chromium
def test_real_script_that_never_resolves_is_unknown_within_the_bound(monkeypatch):
    monkeypatch.setattr(browser, "_PROBE_SCRIPT", "/* never calls the WebDriver callback */")
    started = time.monotonic()
    # 6 s, not less: the same bound covers loading the page, which a loaded host can take seconds for.
    result = probe_browser(timeout_s=6)
    elapsed = time.monotonic() - started
    assert elapsed < 6 + 30, f"took {elapsed:.1f} s"  # the bound plus browser start and quit
    assert result["status"] == "unknown"
    assert result["reason"] == ("timeout while running the probe script (execute_async_script): "
                                "no result within 6 s")
    assert result["browser_version"] and result["flags"][:-1] == launch_flags()
    assert result["webgpu"]["available"] is None and result["webnn"]["available"] is None
    assert not os.path.exists(_user_data_dir(result["flags"]))


def _host_has_gpu() -> bool:
    return any(os.path.exists(p) for p in ("/dev/nvidia0", "/dev/kfd")) or bool(
        os.path.isdir("/dev/dri") and any(n.startswith("renderD") for n in os.listdir("/dev/dri")))


@pytest.mark.browser
@pytest.mark.timeout(60)
@requires_chromium
def test_real_hanging_browser_calls_are_cut_off_by_the_page(monkeypatch):
    # Replace the browser calls with promises that never settle: each step's own deadline must
    # fire, leaving the overall script to resolve with "unknown" verdicts instead of timing out.
    hang = ("navigator.gpu.requestAdapter = () => new Promise(() => {});"
            "if (navigator.ml) { navigator.ml.createContext = () => new Promise(() => {}); }")
    monkeypatch.setattr(browser, "_PROBE_SCRIPT", hang + browser._PROBE_SCRIPT)
    result = probe_browser(timeout_s=6)  # each step's deadline is a third of it
    assert result["status"] == "ok", result["reason"]
    assert result["webgpu"] == {"available": None, "software_only": False, "adapter": None,
                                "reason": "navigator.gpu.requestAdapter() timed out after 2000 ms"}
    assert result["webnn"]["available"] is None
    assert result["webnn"]["devices"] == {"cpu": None, "gpu": None, "npu": None}


@pytest.mark.browser
@pytest.mark.timeout(60)
@pytest.mark.skipif(not (_HAVE_DRIVER and os.access("/bin/false", os.X_OK)), reason="needs chromedriver")
def test_real_browser_that_will_not_start_is_unknown_not_raised():
    # /bin/false exits at once, the way a broken or incompatible browser install does.
    result = probe_browser(executable_path="/bin/false", timeout_s=5)
    assert result["status"] == "unknown"
    assert result["reason"].startswith("starting the browser failed: ")
    assert result["browser_version"] is None
    assert not os.path.exists(_user_data_dir(result["flags"]))
