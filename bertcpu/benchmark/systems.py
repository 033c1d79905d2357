"""The systems under test. Each is a runner with one interface: prepare(model, threads), then
run(input_ids, attention_mask, token_type_ids) -> last_hidden_state as float32 numpy. The peers
are imported only when their runner is prepared, so this module needs nothing beyond bertcpu:
- "bertcpu": bertcpu.BertModel, fp32.
- "torch": transformers' BertModel on PyTorch, eager mode, fp32, inference_mode.
- "onnxruntime": the model exported to ONNX (torch.onnx.export), fused by ONNX Runtime's
  transformers optimizer (Attention, SkipLayerNormalization, BiasGelu, EmbedLayerNormalization),
  run on the CPU execution provider.
- "openvino": the same exported ONNX model compiled by OpenVINO for the CPU with
  INFERENCE_PRECISION_HINT=f32 (it would otherwise pick bf16 on CPUs that have it) and
  PERFORMANCE_HINT=LATENCY.
"""
import hashlib
import os
import warnings

from ..config import BertConfig

# A system's name ends in its precision ("-bf16", "-int8"); without a suffix it runs in fp32.
SYSTEMS = ("bertcpu", "torch", "onnxruntime", "openvino",
           "bertcpu-bf16", "bertcpu-int8", "torch-bf16", "openvino-bf16", "onnxruntime-int8")
PRECISIONS = ("fp32", "bf16", "int8")

# The module each peer needs, to tell which are installed without importing them.
_SYSTEM_MODULES = {
    "bertcpu": (),
    "torch": ("torch", "transformers"),
    "onnxruntime": ("torch", "transformers", "onnx", "onnxruntime"),
    "openvino": ("torch", "transformers", "onnx", "openvino"),
}


def system_precision(name):
    """"fp32", "bf16" or "int8": what the suffix of a system's name says."""
    suffix = name.rsplit("-", 1)[1] if "-" in name else "fp32"
    return suffix if suffix in PRECISIONS else "fp32"


def _system_base(name):
    return name.rsplit("-", 1)[0] if system_precision(name) != "fp32" else name


def _folder_of(model, system):
    if isinstance(model, BertConfig):
        raise ValueError(f"{system} needs a model folder (config.json + safetensors), not a config")
    folder = os.fspath(model)
    if not os.path.isfile(os.path.join(folder, "config.json")):
        raise FileNotFoundError(f"{system}: {folder} is not a model folder (no config.json)")
    return folder


def _has_pooler(folder):
    from ..weights import Checkpoint

    with Checkpoint(folder) as checkpoint:
        return "pooler.dense.weight" in checkpoint


class Runner:
    """One system under test. prepare() loads the model (not timed); run() is what is timed."""

    name = "?"

    def prepare(self, model, threads):
        raise NotImplementedError

    def run(self, input_ids, attention_mask, token_type_ids):
        """last_hidden_state, float32 numpy [batch, seq, hidden]."""
        raise NotImplementedError

    def describe(self):
        """Version and settings, for the report."""
        return self.name

    def close(self):
        """Release the model."""


_BERTCPU_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "int8": "int8"}


class BertcpuRunner(Runner):
    """bertcpu.BertModel in the given precision ("fp32", "bf16", "int8"). Accepts a model folder
    or a BertConfig (random weights, seed 0)."""

    def __init__(self, precision="fp32"):
        self.name = "bertcpu" if precision == "fp32" else f"bertcpu-{precision}"
        self.dtype = _BERTCPU_DTYPES[precision]
        self.model = None
        self.threads = None

    def prepare(self, model, threads):
        from .. import runtime
        from ..model import BertModel

        runtime.set_num_threads(threads)
        if isinstance(model, BertConfig):
            self.model = BertModel.from_config(model, seed=0, dtype=self.dtype)
        else:
            self.model = BertModel.from_pretrained(_folder_of(model, self.name), dtype=self.dtype)
        self.threads = threads

    def run(self, input_ids, attention_mask, token_type_ids):
        return self.model(input_ids, attention_mask, token_type_ids).last_hidden_state

    def describe(self):
        from .. import __version__

        return (f"bertcpu {__version__}, {self.model.dtype}, kernels {self.model.kernels}, "
                f"{self.threads} threads")

    def close(self):
        self.model = None


class TorchRunner(Runner):
    """transformers' BertModel on PyTorch: eager mode (no compilation), inference_mode,
    transformers' default attention implementation; fp32, or with every weight in bf16."""

    def __init__(self, precision="fp32"):
        self.name = "torch" if precision == "fp32" else f"torch-{precision}"
        self.precision = precision
        self.model = None

    def prepare(self, model, threads):
        import torch
        import transformers

        folder = _folder_of(model, self.name)
        torch.set_num_threads(threads)
        self.torch = torch
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float32
        self.model = transformers.BertModel.from_pretrained(
            folder, dtype=dtype, add_pooling_layer=_has_pooler(folder)).eval()
        self.info = (f"torch {torch.__version__}, transformers {transformers.__version__}, "
                     f"{dtype}, attention {self.model.config._attn_implementation}, "
                     f"{threads} threads")

    def run(self, input_ids, attention_mask, token_type_ids):
        torch = self.torch
        with torch.inference_mode():
            out = self.model(input_ids=torch.from_numpy(input_ids),
                             attention_mask=torch.from_numpy(attention_mask),
                             token_type_ids=torch.from_numpy(token_type_ids))
        return out.last_hidden_state.float().numpy()

    def describe(self):
        return self.info

    def close(self):
        self.model = None


def export_onnx(folder, workdir):
    """The model in `folder` exported to ONNX under `workdir` (once per folder and workdir): inputs
    input_ids, attention_mask, token_type_ids ([batch, seq], int64, both axes dynamic); outputs
    last_hidden_state and, when the checkpoint has a pooler, pooler_output.

    Exported with transformers' "eager" attention: its MatMul/Softmax pattern is the one ONNX
    Runtime's optimizer fuses into its Attention op (an SDPA export is left unfused)."""
    import torch
    import transformers

    folder = os.path.abspath(folder)
    target = os.path.join(workdir, hashlib.sha1(folder.encode()).hexdigest()[:12])
    path = os.path.join(target, "model.onnx")
    if os.path.isfile(path):
        return path
    os.makedirs(target, exist_ok=True)
    with_pooler = _has_pooler(folder)
    model = transformers.BertModel.from_pretrained(folder, dtype=torch.float32,
                                                   attn_implementation="eager",
                                                   add_pooling_layer=with_pooler).eval()

    class Outputs(torch.nn.Module):
        """Keyword arguments in, plain tensors out: what the exporter can trace."""

        def __init__(self, bert):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            out = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                            token_type_ids=token_type_ids)
            if with_pooler:
                return out.last_hidden_state, out.pooler_output
            return out.last_hidden_state

    inputs = ["input_ids", "attention_mask", "token_type_ids"]
    outputs = ["last_hidden_state"] + (["pooler_output"] if with_pooler else [])
    dynamic = {name: {0: "batch", 1: "seq"} for name in inputs + ["last_hidden_state"]}
    if with_pooler:
        dynamic["pooler_output"] = {0: "batch"}
    example = tuple(torch.ones((2, 16), dtype=torch.int64) for _ in inputs)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about the mask's Python branches
        torch.onnx.export(Outputs(model), example, path + ".partial", input_names=inputs,
                          output_names=outputs, dynamic_axes=dynamic, opset_version=17,
                          dynamo=False)
    os.replace(path + ".partial", path)
    return path


class OnnxRuntimeRunner(Runner):
    """ONNX Runtime, CPU execution provider, after its transformers optimizer fused the graph;
    intra_op_num_threads = threads, sequential execution, ORT's default spinning. int8: the fused
    model through ORT's dynamic quantization with its defaults (int8 weights per tensor, uint8
    activations quantized per call), as ORT documents it for BERT."""

    def __init__(self, workdir, precision="fp32"):
        self.name = "onnxruntime" if precision == "fp32" else f"onnxruntime-{precision}"
        self.precision = precision
        self.workdir = workdir
        self.session = None

    def prepare(self, model, threads):
        import onnxruntime
        from onnxruntime.transformers import optimizer

        folder = _folder_of(model, self.name)
        config = BertConfig.from_json_file(os.path.join(folder, "config.json"))
        plain = export_onnx(folder, self.workdir)
        fused_path = plain.replace("model.onnx", "model_ort_fused.onnx")
        fused = optimizer.optimize_model(plain, model_type="bert",
                                         num_heads=config.num_attention_heads,
                                         hidden_size=config.hidden_size)
        stats = fused.get_fused_operator_statistics()
        fused.save_model_to_file(fused_path)
        del fused
        if self.precision == "int8":
            import onnx
            from onnxruntime.quantization import QuantType, quantize_dynamic

            quantized_path = fused_path.replace(".onnx", "_int8.onnx")
            # The fused graph's contrib ops defeat ONNX shape inference, which the quantizer uses
            # to type the tensors it meets: they are all float.
            quantize_dynamic(fused_path, quantized_path, weight_type=QuantType.QInt8,
                             extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
            fused_path = quantized_path
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = onnxruntime.InferenceSession(fused_path, options,
                                                    providers=["CPUExecutionProvider"])
        self.fused_ops = {op: n for op, n in stats.items() if n}
        fused_text = ", ".join(f"{op} {n}" for op, n in self.fused_ops.items()) or "nothing"
        warning = "" if self.fused_ops.get("Attention") else " (WARNING: attention not fused)"
        quantized = ", dynamic int8 quantization" if self.precision == "int8" else ""
        self.info = (f"onnxruntime {onnxruntime.__version__}, fused: {fused_text}{warning}"
                     f"{quantized}, {threads} threads")

    def run(self, input_ids, attention_mask, token_type_ids):
        return self.session.run(["last_hidden_state"], {
            "input_ids": input_ids, "attention_mask": attention_mask,
            "token_type_ids": token_type_ids})[0]

    def describe(self):
        return self.info

    def close(self):
        self.session = None


class OpenVinoRunner(Runner):
    """OpenVINO on the CPU: the exported ONNX model compiled with INFERENCE_PRECISION_HINT = f32
    (or bf16, what OpenVINO picks by default on a CPU with bf16 instructions),
    INFERENCE_NUM_THREADS = threads and PERFORMANCE_HINT=LATENCY."""

    _HINTS = {"fp32": ("f32", "float32"), "bf16": ("bf16", "bfloat16")}

    def __init__(self, workdir, precision="fp32"):
        self.name = "openvino" if precision == "fp32" else f"openvino-{precision}"
        self.precision = precision
        self.workdir = workdir
        self.request = None

    def prepare(self, model, threads):
        import openvino

        folder = _folder_of(model, self.name)
        core = openvino.Core()
        hint, type_name = self._HINTS[self.precision]
        compiled = core.compile_model(core.read_model(export_onnx(folder, self.workdir)), "CPU", {
            "INFERENCE_PRECISION_HINT": hint,
            "INFERENCE_NUM_THREADS": threads,
            "PERFORMANCE_HINT": "LATENCY",
        })
        precision = str(compiled.get_property("INFERENCE_PRECISION_HINT"))
        if precision not in (hint, f"<Type: '{type_name}'>"):
            raise RuntimeError(f"OpenVINO compiled the model with precision {precision}, not "
                               f"{hint} (this CPU may lack the instructions)")
        self.request = compiled.create_infer_request()
        self.info = (f"openvino {openvino.__version__}, precision {hint}, "
                     f"{compiled.get_property('INFERENCE_NUM_THREADS')} threads, "
                     f"{compiled.get_property('NUM_STREAMS')} stream(s), LATENCY hint")

    def run(self, input_ids, attention_mask, token_type_ids):
        self.request.infer({"input_ids": input_ids, "attention_mask": attention_mask,
                            "token_type_ids": token_type_ids})
        # The request reuses its output buffer on the next call: keep a copy.
        return self.request.get_tensor("last_hidden_state").data.copy()

    def describe(self):
        return self.info

    def close(self):
        self.request = None


def installed_systems():
    """The systems whose Python packages are installed (found without importing them)."""
    import importlib.util

    return [name for name in SYSTEMS
            if all(importlib.util.find_spec(module) is not None
                   for module in _SYSTEM_MODULES[_system_base(name)])]


def make_runner(name, workdir):
    """A fresh runner for system `name` (one of SYSTEMS); workdir holds exported models."""
    if name not in SYSTEMS:
        raise ValueError(f"unknown system {name!r}: systems are {', '.join(SYSTEMS)}")
    base, precision = _system_base(name), system_precision(name)
    if base == "bertcpu":
        return BertcpuRunner(precision)
    if base == "torch":
        return TorchRunner(precision)
    if base == "onnxruntime":
        return OnnxRuntimeRunner(workdir, precision)
    return OpenVinoRunner(workdir, precision)
