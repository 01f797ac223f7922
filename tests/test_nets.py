"""Every network's layer output shapes equal the shapes printed in Appendices D.1, I.1, I.2, I.3."""
import pytest
import torch

import vaebook  # noqa: F401
from vaebook.nets import ARCHITECTURES, build_nets, layer_output_shapes

# (layer kind, printed output shape) at every point the paper prints a size, in order.
PAPER_SHAPES = {
    "d1": {
        "enc": [("ReLU", (64, 14, 14)), ("ReLU", (128, 7, 7))],
        "dec": [("Reshape", (128, 7, 7)), ("ReLU", (64, 14, 14)), ("ConvTranspose2d", (1, 28, 28))],
    },
    "mnist": {
        "enc": [("ReLU", (64, 14, 14)), ("ReLU", (128, 7, 7))],
        "dec": [("Reshape", (128, 7, 7)), ("ReLU", (64, 14, 14)), ("ConvTranspose2d", (1, 28, 28))],
    },
    "celeba64": {
        "enc": [("ReLU", (128, 32, 32)), ("ReLU", (256, 16, 16)), ("ReLU", (512, 8, 8)), ("ReLU", (1024, 4, 4))],
        "dec": [("ReLU", (512, 16, 16)), ("ReLU", (256, 32, 32)), ("ReLU", (128, 64, 64)),
                ("ConvTranspose2d", (3, 64, 64))],
    },
    "celebahq128": {
        "enc": [("ReLU", (128, 64, 64)), ("ReLU", (256, 32, 32)), ("ReLU", (512, 16, 16)), ("ReLU", (1024, 8, 8))],
        "dec": [("ReLU", (512, 32, 32)), ("ReLU", (256, 64, 64)), ("ReLU", (128, 128, 128)),
                ("ConvTranspose2d", (3, 128, 128))],
    },
}
# which layers carry batch-norm, as printed (count of BatchNorm layers in encoder / decoder)
PAPER_BN = {"d1": (0, 0), "mnist": (1, 3), "celeba64": (3, 2), "celebahq128": (3, 2)}
# fully connected sizes as printed: encoder head (2·d_z or d_z for D.1's mean-only Section-4 encoder), decoder first FC
PAPER_FC = {"d1": (8, [1024, 128 * 7 * 7]), "mnist": (32, [1024, 128 * 7 * 7]), "celeba64": (128, [8 * 8 * 1024]),
            "celebahq128": (512, [16 * 16 * 1024])}


def _printed_points(shapes, kinds_expected):
    """Pick, in order, the outputs of layers whose kind matches each printed entry (greedy subsequence match)."""
    got, i = [], 0
    for kind, shape in kinds_expected:
        while i < len(shapes) and not (shapes[i][0] == kind and shapes[i][1] == shape):
            i += 1
        got.append(shapes[i] if i < len(shapes) else None)
        i += 1
    return got


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_layer_shapes_match_paper(arch):
    spec = ARCHITECTURES[arch]
    d_z = spec.default_d_z
    enc_out = d_z if arch == "d1" else 2 * d_z
    enc, dec = build_nets(arch, d_z, enc_out=enc_out)
    enc.eval(), dec.eval()
    with torch.no_grad():
        es = layer_output_shapes(enc, torch.zeros(2, *spec.image_shape))
        ds = layer_output_shapes(dec, torch.zeros(2, d_z))
    assert _printed_points(es, PAPER_SHAPES[arch]["enc"]) == PAPER_SHAPES[arch]["enc"], es
    assert _printed_points(ds, PAPER_SHAPES[arch]["dec"]) == PAPER_SHAPES[arch]["dec"], ds
    assert es[-1][1] == (PAPER_FC[arch][0],)
    fcs = [m.out_features for m in dec if isinstance(m, torch.nn.Linear)]
    assert fcs == PAPER_FC[arch][1]
    n_bn = lambda net: sum(isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)) for m in net)  # noqa: E731
    assert (n_bn(enc), n_bn(dec)) == PAPER_BN[arch]


@pytest.mark.parametrize("arch,k", [("d1", 4), ("mnist", 5), ("celeba64", 5)])
def test_kernel_sizes_as_printed(arch, k):
    enc, dec = build_nets(arch)
    convs = [m for m in list(enc) + list(dec) if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    assert all(m.kernel_size == (k, k) for m in convs)
    # stride 2 everywhere except CelebA's last (resolution-keeping) ConvT
    strides = [m.stride for m in convs]
    assert strides[:-1] == [(2, 2)] * (len(convs) - 1)


def test_extra_decoder_channels_and_errors():
    _, dec = build_nets("mnist", dec_channels=2)
    assert dec(torch.zeros(2, 16)).shape == (2, 2, 28, 28)
    with pytest.raises(ValueError, match="unknown architecture"):
        build_nets("cifar")
