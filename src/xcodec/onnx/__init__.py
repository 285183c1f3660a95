"""ONNX export (:mod:`xcodec.onnx.export`, graphs in :mod:`xcodec.onnx.graphs`) and the onnxruntime backend."""
