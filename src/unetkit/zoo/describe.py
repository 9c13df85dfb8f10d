"""The rdf.yaml of a package, built and validated by `bioimageio.spec` (model format 0.5).

Each part is a small function from the run to spec nodes: tensors with their
axes, sizes and halo; the preprocessing in the spec's own operations; the three
weights formats; the description around them.
"""

from __future__ import annotations

from pathlib import Path

import torch
from bioimageio.spec.model import v0_5 as spec

from ..checkpoint import Run
from ..config import DataConfig
from ..data.normalize import PER_IMAGE
from ..model import count_parameters
from ..prediction.export import OPSET
from ..version import __version__
from .tensors import Sizes

PAPER = spec.CiteEntry(
    text="Ronneberger, Fischer and Brox. U-Net: Convolutional Networks for Biomedical Image Segmentation. MICCAI 2015",
    doi=spec.Doi("10.1007/978-3-319-24574-4_28"),
)
TAGS = ["unet", "segmentation", "semantic-segmentation", "2d", "pytorch", "unetkit"]
RGB = ("red", "green", "blue")


def preprocessing(data: DataConfig) -> list:
    """unetkit's normalisation (data/normalize.py) as spec operations, applied in order."""
    steps: list = []
    if data.normalization in PER_IMAGE:  # per image (and channel, unless joint): (x - p_low) / (p_high - p_low)
        low, high = data.percentiles
        axes = (["channel"] if data.normalization == "percentile-joint" else []) + ["y", "x"]
        kwargs = spec.ScaleRangeKwargs(axes=[spec.AxisId(a) for a in axes], min_percentile=low, max_percentile=high)
        steps.append(spec.ScaleRangeDescr(kwargs=kwargs))
    if data.normalization in ("meanstd", "imagenet"):  # the training set's or ImageNet's mean and std, per channel
        kwargs = spec.FixedZeroMeanUnitVarianceAlongAxisKwargs(
            mean=list(data.mean), std=[max(s, 1e-6) for s in data.std], axis=spec.AxisId("channel"))
        steps.append(spec.FixedZeroMeanUnitVarianceDescr(kwargs=kwargs))
    return steps


def _space_axes(sizes: Sizes) -> list:
    size = spec.ParameterizedSize(min=sizes.min, step=sizes.step)
    return [spec.SpaceInputAxis(id=spec.AxisId(a), size=size) for a in ("y", "x")]


def input_descr(run: Run, sizes: Sizes, test_input: Path) -> spec.InputTensorDescr:
    channels = run.model.config.in_channels
    names = ["grey"] if channels == 1 else list(RGB) if channels == 3 else [f"channel{i}" for i in range(channels)]
    return spec.InputTensorDescr(
        id=spec.TensorId("input"),
        description="an image, any intensity range (normalised by the preprocessing)",
        axes=[spec.BatchAxis(), spec.ChannelAxis(channel_names=names), *_space_axes(sizes)],
        test_tensor=spec.FileDescr(source=test_input),
        data=spec.IntervalOrRatioDataDescr(type="float32"),
        pad=spec.SymmetricPadding(mode="symmetric"),  # unetkit's mirror convention (data/windows.py)
        preprocessing=preprocessing(run.data),
    )


def output_descr(run: Run, sizes: Sizes, test_output: Path) -> spec.OutputTensorDescr:
    classes = run.model.config.n_classes
    space = [spec.SpaceOutputAxisWithHalo(id=spec.AxisId(a), halo=sizes.halo,
                                          size=spec.SizeReference(tensor_id=spec.TensorId("input"), axis_id=spec.AxisId(a)))
             for a in ("y", "x")]
    return spec.OutputTensorDescr(
        id=spec.TensorId("probabilities"),
        description="class probabilities (calibrated softmax; sigmoid for one class)",
        axes=[spec.BatchAxis(), spec.ChannelAxis(channel_names=[f"class{k}" for k in range(classes)]), *space],
        test_tensor=spec.FileDescr(source=test_output),
        data=spec.IntervalOrRatioDataDescr(type="float32", range=(0.0, 1.0)),
    )


def weights_descr(files: dict[str, Path], architecture: Path, kwargs: dict) -> spec.WeightsDescr:
    """`files`: format -> file; the state dict's architecture is `architecture` (graph.py) called with `kwargs`."""
    torch_version = spec.Version(torch.__version__.split("+")[0])
    return spec.WeightsDescr(
        pytorch_state_dict=spec.PytorchStateDictWeightsDescr(
            source=files["pytorch_state_dict"], pytorch_version=torch_version,
            architecture=spec.ArchitectureFromFileDescr(source=architecture, callable=spec.Identifier("UNetProbabilities"), kwargs=kwargs),
        ),
        torchscript=spec.TorchscriptWeightsDescr(source=files["torchscript"], pytorch_version=torch_version, parent="pytorch_state_dict"),
        onnx=spec.OnnxWeightsDescr(source=files["onnx"], opset_version=OPSET, parent="pytorch_state_dict"),
    )


def model_descr(run: Run, *, name: str, authors: list[str], license: str, inputs, outputs, weights, documentation: Path,
                cover: Path, attachments: list[Path], unetkit: dict) -> spec.ModelDescr:
    model = run.model.config
    return spec.ModelDescr(
        name=name,
        description=f"U-Net ({model.padding} padding, depth {model.depth}, width {model.base_width}) for {model.n_classes}-class "
                    f"segmentation of {model.in_channels}-channel images, trained with unetkit {__version__}",
        authors=[spec.Author(name=a) for a in authors],
        cite=[PAPER],
        license=spec.LicenseId(license),
        tags=TAGS,
        documentation=spec.FileDescr(source=documentation),
        covers=[spec.FileDescr(source=cover)],
        attachments=[spec.FileDescr(source=a) for a in attachments],
        inputs=[inputs],
        outputs=[outputs],
        weights=weights,
        config=spec.Config(
            bioimageio=spec.BioimageioConfig(architecture_type="unet", model_parameter_count=count_parameters(run.model)),
            unetkit=unetkit,
        ),
    )
