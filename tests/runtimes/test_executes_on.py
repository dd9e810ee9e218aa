"""Each runtime says what actually ran the model (the bench report's "Runs on" line)."""

from __future__ import annotations

from fsanet import runtimes


def test_onnx_runtime_names_its_provider(fusion_onnx):
    with runtimes.open(fusion_onnx, threads=1) as rt:
        assert rt.executes_on() == "onnxruntime CPUExecutionProvider"


def test_litert_reports_whether_xnnpack_took_the_graph(fusion_tflite):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    with runtimes.open(fusion_tflite, threads=1) as rt:
        assert rt.executes_on().startswith("ai_edge_litert, XNNPACK delegate (")
        # the same file with the default delegates switched off runs LiteRT's own kernels
        rt.interpreter = Interpreter(
            model_path=str(fusion_tflite),
            num_threads=1,
            experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        )
        rt.interpreter.allocate_tensors()
        assert rt.executes_on() == "ai_edge_litert, built-in kernels (no delegate)"
