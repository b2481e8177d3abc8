"""`lsdebm convert`: the authors' state-dict layout round-trips into our models (outputs equal)."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from lsdebm.cli.main import main
from lsdebm.convert import MAPPING, map_keys
from lsdebm.runtime.checkpoint import load_checkpoint

pytestmark = pytest.mark.usefixtures("single_thread")

C, LATENT, HIDDEN, SIDE = 2, 6, 12, 2  # 3 poolings -> 16^3 grid


# Modules with the authors' attribute names and block layout (notes §2), written for this test.
def block(cin: int, cmid: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv3d(cin, cmid, 3, padding=1), nn.BatchNorm3d(cmid), nn.ReLU(),
                         nn.Conv3d(cmid, cout, 3, padding=1), nn.BatchNorm3d(cout), nn.ReLU())


class AuthorsEncoder(nn.Module):
    def __init__(self, widths):  # widths: out channels of conv_initial, x_64, x_32, x_16
        super().__init__()
        w = widths
        self.conv_initial = block(1, w[0] // 2, w[0])
        self.conv_rest_x_64 = block(w[0], w[0], w[1])
        self.conv_rest_x_32 = block(w[1], w[1], w[2])
        self.conv_rest_x_16 = block(w[2], w[2], w[3])
        self.linear_enc = nn.Linear(w[3] * SIDE ** 3, LATENT)

    def forward(self, x):
        h = self.conv_initial(x)
        for b in (self.conv_rest_x_64, self.conv_rest_x_32, self.conv_rest_x_16):
            h = b(F.max_pool3d(h, 2))
        return self.linear_enc(h.flatten(1))


class AuthorsDecoder(nn.Module):
    def __init__(self, widths):  # widths: linear_dec channels, then out channels of u_32, u_64, u_128
        super().__init__()
        w = widths
        self.top = w[0]
        self.linear_dec = nn.Linear(LATENT, w[0] * SIDE ** 3)
        self.conv_rest_u_32 = block(w[0], w[1], w[1])
        self.conv_rest_u_64 = block(w[1], w[2], w[2])
        self.conv_rest_u_128 = block(w[2], w[3], w[3])
        self.conv_final = nn.Conv3d(w[3], 1, 3, padding=1)

    def forward(self, z):
        h = self.linear_dec(z).view(-1, self.top, SIDE, SIDE, SIDE)
        for b in (self.conv_rest_u_32, self.conv_rest_u_64, self.conv_rest_u_128):
            h = b(F.interpolate(h, scale_factor=2, mode="nearest"))
        return torch.sigmoid(self.conv_final(h))


class AuthorsEnergy(nn.Module):
    def __init__(self, in_dim, inner_layers, batchnorm):
        super().__init__()
        layers = [nn.Linear(in_dim, HIDDEN), nn.GELU()] + ([nn.BatchNorm1d(HIDDEN)] if batchnorm else [])
        for _ in range(inner_layers):
            layers += [nn.Linear(HIDDEN, HIDDEN), nn.GELU()] + ([nn.BatchNorm1d(HIDDEN)] if batchnorm else [])
        self.ebm = nn.Sequential(*layers, nn.Linear(HIDDEN, 1))

    def forward(self, z, t=None):
        return self.ebm(z if t is None else torch.cat([z, t.view(-1, 1)], 1)).view(-1)


class AuthorsVAE(nn.Module):
    def __init__(self):
        super().__init__()
        enc, dec = AuthorsEncoder((C, 2 * C, 4 * C, 8 * C)), AuthorsDecoder((8 * C, 4 * C, 2 * C, C))
        for name, module in list(enc.named_children()) + list(dec.named_children()):
            self.add_module(name, module)
        self.enc, self.dec = [enc], [dec]  # plain lists: not registered twice


def randomized(module: nn.Module) -> nn.Module:
    torch.manual_seed(1)
    for m in module.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm3d)):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.normal_()
            m.bias.data.normal_()
    return module.eval()


def test_lsdebm_round_trip(tmp_path):
    enc = randomized(AuthorsEncoder((C, C, 2 * C, 4 * C)))
    dec = randomized(AuthorsDecoder((4 * C, 2 * C, C, C)))
    energy = randomized(AuthorsEnergy(LATENT + 1, 1, batchnorm=False))
    for name, m in (("enc", enc), ("dec", dec), ("efunc", energy)):
        torch.save(m.state_dict(), tmp_path / f"{name}.pth")
    out = tmp_path / "ref.safetensors"
    assert main(["convert", "--kind", "lsdebm", "--encoder", str(tmp_path / "enc.pth"), "--decoder",
                 str(tmp_path / "dec.pth"), "--energy", str(tmp_path / "efunc.pth"), "--out", str(out),
                 "--T", "15"]) == 0
    loaded = load_checkpoint(out, expect_kind="lsdebm")
    cfg, model = loaded.config, loaded.model
    assert cfg.preset == "reference" and cfg.model.grid == 16 and cfg.model.channels == (C, C, 2 * C, 4 * C)
    assert cfg.model.shared_head and cfg.model.time_embedding == "raw" and cfg.schedule.T == 15
    assert cfg.langevin.recon_steps == 15 and cfg.model.energy_hidden == HIDDEN and cfg.model.energy_layers == 2
    assert loaded.info["source_files"][0]["sha256"]
    x = (torch.rand(2, 1, 16, 16, 16) > 0.5).float()
    z, t = torch.randn(2, LATENT), torch.tensor([3, 7])
    with torch.no_grad():
        mu, logvar = model.encoder(x)
        torch.testing.assert_close(mu, enc(x))
        torch.testing.assert_close(logvar, F.softplus(enc(x)) + 1e-6)  # their shared head
        torch.testing.assert_close(torch.sigmoid(model.decoder(z)), dec(z))
        torch.testing.assert_close(model.energy(z, t), energy(z, t.float()))


def test_vae_and_lebm_round_trip(tmp_path):
    vae = randomized(AuthorsVAE())
    torch.save(vae.state_dict(), tmp_path / "vae_200.pth")
    assert main(["convert", "--kind", "vae", "--model", str(tmp_path / "vae_200.pth"),
                 "--out", str(tmp_path / "vae.safetensors")]) == 0
    ours = load_checkpoint(tmp_path / "vae.safetensors", expect_kind="vae").model
    x, z = (torch.rand(1, 1, 16, 16, 16) > 0.5).float(), torch.randn(3, LATENT)
    with torch.no_grad():
        torch.testing.assert_close(ours.encoder(x)[0], vae.enc[0](x))
        torch.testing.assert_close(torch.sigmoid(ours.decoder(z)), vae.dec[0](z))

    gen = randomized(AuthorsDecoder((8 * C, 4 * C, 2 * C, C)))
    efunc = randomized(AuthorsEnergy(LATENT, 3, batchnorm=True))
    torch.save(gen.state_dict(), tmp_path / "genmodel.pth")
    torch.save(efunc.state_dict(), tmp_path / "efunc.pth")
    assert main(["convert", "--kind", "lebm", "--decoder", str(tmp_path / "genmodel.pth"), "--energy",
                 str(tmp_path / "efunc.pth"), "--out", str(tmp_path / "lebm.safetensors")]) == 0
    lebm = load_checkpoint(tmp_path / "lebm.safetensors", expect_kind="lebm")
    assert lebm.config.lebm.batchnorm and lebm.config.lebm.energy_layers == 4
    with torch.no_grad():
        torch.testing.assert_close(torch.sigmoid(lebm.model.decoder(z)), gen(z))
        torch.testing.assert_close(lebm.model.energy(z), efunc(z))


def test_mapping_table_positions():
    state = {k: torch.zeros(1) for k in ("conv_initial.0.weight", "conv_rest_x_64.3.bias", "conv_rest_x_16.4.weight",
                                         "linear_enc.weight", "linear_dec.bias", "conv_rest_u_32.0.weight",
                                         "conv_rest_u_128.1.running_mean", "conv_final.weight", "ebm.12.bias")}
    state["conv_rest_x_32.0.weight"] = state["conv_rest_u_64.0.weight"] = torch.zeros(1)
    keys = map_keys(state, ("encoder", "decoder", "energy"))
    assert keys["conv_initial.0.weight"] == "encoder.features.0.0.weight"
    assert keys["conv_rest_x_64.3.bias"] == "encoder.features.2.3.bias"
    assert keys["conv_rest_x_16.4.weight"] == "encoder.features.6.4.weight"
    assert keys["linear_enc.weight"] == "encoder.mean.weight"
    assert keys["conv_rest_u_32.0.weight"] == "decoder.features.1.0.weight"
    assert keys["conv_rest_u_128.1.running_mean"] == "decoder.features.5.1.running_mean"
    assert keys["conv_final.weight"] == "decoder.features.6.weight"
    assert keys["ebm.12.bias"] == "energy.net.12.bias"
    assert len(MAPPING) == 7


class Marker:
    """Unpickling this would create a file: proves that convert never unpickles objects."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def _fails(capsys, argv, needle):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lsdebm: error:") and err.count("\n") == 0 and needle in err, err


def test_bad_state_dicts_are_refused(tmp_path, capsys):
    out = tmp_path / "x.safetensors"
    enc = AuthorsEncoder((C, C, 2 * C, 4 * C))
    dec, energy = AuthorsDecoder((4 * C, 2 * C, C, C)), AuthorsEnergy(LATENT + 1, 1, False)
    torch.save(dec.state_dict(), tmp_path / "dec.pth")
    torch.save(energy.state_dict(), tmp_path / "e.pth")
    args = ["--decoder", str(tmp_path / "dec.pth"), "--energy", str(tmp_path / "e.pth"), "--out", str(out)]
    # an unknown key
    torch.save({**enc.state_dict(), "extra_head.weight": torch.zeros(2)}, tmp_path / "enc_extra.pth")
    _fails(capsys, ["convert", "--kind", "lsdebm", "--encoder", str(tmp_path / "enc_extra.pth"), *args],
           "unmatched key 'extra_head.weight'")
    # a latent size that does not fit the decoder
    bad = AuthorsEnergy(LATENT + 3, 1, False)
    torch.save(bad.state_dict(), tmp_path / "bad_e.pth")
    torch.save(enc.state_dict(), tmp_path / "enc.pth")
    _fails(capsys, ["convert", "--kind", "lsdebm", "--encoder", str(tmp_path / "enc.pth"), "--decoder",
                    str(tmp_path / "dec.pth"), "--energy", str(tmp_path / "bad_e.pth"), "--out", str(out)],
           "ebm.0.weight: shape")
    # a pickled object instead of tensors: refused by the weights-only loader, never executed
    marker = tmp_path / "was_unpickled"
    torch.save({"conv_initial.0.weight": Marker(marker)}, tmp_path / "evil.pth")
    _fails(capsys, ["convert", "--kind", "lsdebm", "--encoder", str(tmp_path / "evil.pth"), *args],
           "not a plain PyTorch state dict")
    assert not marker.exists()
    # a whole pickled module
    torch.save(enc, tmp_path / "module.pth")
    _fails(capsys, ["convert", "--kind", "lsdebm", "--encoder", str(tmp_path / "module.pth"), *args], "weights-only")
    # a decoder file given as the encoder, and a missing role
    _fails(capsys, ["convert", "--kind", "lsdebm", "--encoder", str(tmp_path / "dec.pth"), *args], "holds no encoder")
    torch.save({**enc.state_dict(), **dec.state_dict()}, tmp_path / "both.pth")
    _fails(capsys, ["convert", "--kind", "lsdebm", "--encoder", str(tmp_path / "both.pth"), *args],
           "belongs to the decoder")
    _fails(capsys, ["convert", "--kind", "lsdebm", *args], "missing encoder")
    # --spacing 0 (it was written as a 1 mm model, silently)
    _fails(capsys, ["convert", "--kind", "lsdebm", "--encoder", str(tmp_path / "enc.pth"), *args, "--spacing", "0"],
           "--spacing 0.0 must be > 0")
    # --T for a model without diffusion steps (it was ignored without a word)
    _fails(capsys, ["convert", "--kind", "vae", "--model", str(tmp_path / "both.pth"), "--out", str(out), "--T", "5"],
           "--T 5 only applies to an LSD-EBM (its diffusion steps); a vae has none")
    assert not out.exists() and not list(tmp_path.glob(".x.safetensors*"))
