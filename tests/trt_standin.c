/*
 * A stand-in for TensorRT's native libraries (libnvinfer, libnvinfer_plugin, libnvonnxparser), for rtk's API
 * conformance test ONLY (tests/test_trt_api.py, built by tests/trt_bindings.py with gcc at test time).
 *
 * TensorRT's Python bindings (the `tensorrt-cu12-bindings` wheel on PyPI) link these libraries, which only
 * NVIDIA's own package index ships. The bindings' tensorrt.so takes exactly the nine C functions below from
 * them (`nm -D --undefined-only tensorrt.so`, the same nine in 10.0 through 11.4). With this library loaded
 * under their sonames (libnvinfer.so.<major>, ...), the real `tensorrt` module imports on a CPU machine and its
 * classes, methods and enum members can be inspected. Nothing can run through it: every factory returns NULL,
 * so `trt.Builder(logger)` raises "pybind11::init(): factory function returned nullptr", which is what the real
 * library does on a machine without a usable GPU. It is never installed or used outside the tests.
 */
#include <stdbool.h>
#include <stddef.h>

/* libnvinfer */
void *createInferBuilder_INTERNAL(void *logger, int version) { return NULL; }
void *createInferRefitter_INTERNAL(void *engine, void *logger, int version) { return NULL; }
void *createInferRuntime_INTERNAL(void *logger, int version) { return NULL; }
void *getBuilderPluginRegistry(int capability) { return NULL; }
void *getPluginRegistry(void) { return NULL; }

/* libnvinfer_plugin */
bool initLibNvInferPlugins(void *logger, const char *libNamespace) { return false; }

/* libnvonnxparser */
void *createNvOnnxParser_INTERNAL(void *network, void *logger, int version) { return NULL; }
void *createNvOnnxParserRefitter_INTERNAL(void *refitter, void *logger, int version) { return NULL; }
int getNvOnnxParserVersion(void) { return 0; }
