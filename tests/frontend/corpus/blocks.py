"""Recurrent building blocks written by hand: Mamba-ish blocks, user-written cells stepped in Python loops,
parallel scans, QRNN/SRU, plus a couple of "kitchen sink" encoders around nn.LSTM/nn.GRU."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .common import Entry, gen, randn, random_lengths, seeded

# ---------------------------------------------------------------------------------------------------------------
# 9a. Mamba (selective scan as a Python loop over time), johnma2006/mamba-minimal
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class ModelArgs:  # johnma2006/mamba-minimal model.py
    d_model: int
    n_layer: int
    vocab_size: int
    d_state: int = 16
    expand: int = 2
    dt_rank: int | str = "auto"
    d_conv: int = 4
    pad_vocab_size_multiple: int = 8
    conv_bias: bool = True
    bias: bool = False

    def __post_init__(self):
        self.d_inner = int(self.expand * self.d_model)

        if self.dt_rank == "auto":
            self.dt_rank = math.ceil(self.d_model / 16)

        if self.vocab_size % self.pad_vocab_size_multiple != 0:
            self.vocab_size += self.pad_vocab_size_multiple - self.vocab_size % self.pad_vocab_size_multiple


class RMSNorm(nn.Module):  # johnma2006/mamba-minimal (the usual hand-written RMSNorm)
    def __init__(self, d_model: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))

    def forward(self, x):
        output = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight

        return output


class MambaBlock(nn.Module):  # johnma2006/mamba-minimal MambaBlock (einops replaced by transpose/einsum)
    def __init__(self, args: ModelArgs):
        """A single Mamba block, as described in Figure 3 in Section 3.4 in the Mamba paper [1]."""
        super().__init__()
        self.args = args

        self.in_proj = nn.Linear(args.d_model, args.d_inner * 2, bias=args.bias)

        self.conv1d = nn.Conv1d(
            in_channels=args.d_inner,
            out_channels=args.d_inner,
            bias=args.conv_bias,
            kernel_size=args.d_conv,
            groups=args.d_inner,
            padding=args.d_conv - 1,
        )

        # x_proj takes in `x` and outputs the input-specific Δ, B, C
        self.x_proj = nn.Linear(args.d_inner, args.dt_rank + args.d_state * 2, bias=False)

        # dt_proj projects Δ from dt_rank to d_in
        self.dt_proj = nn.Linear(args.dt_rank, args.d_inner, bias=True)

        A = torch.arange(1, args.d_state + 1, dtype=torch.float32).repeat(args.d_inner, 1)  # n -> d n
        self.A_log = nn.Parameter(torch.log(A))
        self.D = nn.Parameter(torch.ones(args.d_inner))
        self.out_proj = nn.Linear(args.d_inner, args.d_model, bias=args.bias)

    def forward(self, x):
        (b, l, d) = x.shape

        x_and_res = self.in_proj(x)  # shape (b, l, 2 * d_in)
        (x, res) = x_and_res.split(split_size=[self.args.d_inner, self.args.d_inner], dim=-1)

        x = x.transpose(1, 2)  # b l d_in -> b d_in l
        x = self.conv1d(x)[:, :, :l]
        x = x.transpose(1, 2)  # b d_in l -> b l d_in

        x = F.silu(x)

        y = self.ssm(x)

        y = y * F.silu(res)

        output = self.out_proj(y)

        return output

    def ssm(self, x):
        (d_in, n) = self.A_log.shape

        # Compute ∆ A B C D, the state space parameters.
        A = -torch.exp(self.A_log.float())  # shape (d_in, n)
        D = self.D.float()

        x_dbl = self.x_proj(x)  # (b, l, dt_rank + 2*n)

        (delta, B, C) = x_dbl.split(split_size=[self.args.dt_rank, n, n], dim=-1)  # delta: (b, l, dt_rank)
        delta = F.softplus(self.dt_proj(delta))  # (b, l, d_in)

        y = self.selective_scan(x, delta, A, B, C, D)

        return y

    def selective_scan(self, u, delta, A, B, C, D):
        (b, l, d_in) = u.shape
        n = A.shape[1]

        # Discretize continuous parameters (A, B)
        deltaA = torch.exp(torch.einsum("bld,dn->bldn", delta, A))
        deltaB_u = torch.einsum("bld,bln,bld->bldn", delta, B, u)

        # Perform selective scan (see scan_SSM() in The Annotated S4 [2])
        x = torch.zeros((b, d_in, n), device=deltaA.device)
        ys = []
        for i in range(l):
            x = deltaA[:, i] * x + deltaB_u[:, i]
            y = torch.einsum("bdn,bn->bd", x, C[:, i, :])
            ys.append(y)
        y = torch.stack(ys, dim=1)  # shape (b, l, d_in)

        y = y + u * D

        return y


class ResidualBlock(nn.Module):  # johnma2006/mamba-minimal
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.args = args
        self.mixer = MambaBlock(args)
        self.norm = RMSNorm(args.d_model)

    def forward(self, x):
        output = self.mixer(self.norm(x)) + x

        return output


class Mamba(nn.Module):  # johnma2006/mamba-minimal full LM (tied lm_head)
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.args = args

        self.embedding = nn.Embedding(args.vocab_size, args.d_model)
        self.layers = nn.ModuleList([ResidualBlock(args) for _ in range(args.n_layer)])
        self.norm_f = RMSNorm(args.d_model)

        self.lm_head = nn.Linear(args.d_model, args.vocab_size, bias=False)
        self.lm_head.weight = self.embedding.weight  # Tie output projection to embedding weights.
        # See "Weight Tying" paper

    def forward(self, input_ids):
        x = self.embedding(input_ids)

        for layer in self.layers:
            x = layer(x)

        x = self.norm_f(x)
        logits = self.lm_head(x)

        return logits


def _mamba_inputs(batch, length):
    gg = gen("mamba_minimal_lm", batch, length)
    return (torch.randint(0, 50, (batch, length), generator=gg, dtype=torch.int64),)


# ---------------------------------------------------------------------------------------------------------------
# 9b. Mamba-shaped gated block with the scan replaced by nn.GRU
# ---------------------------------------------------------------------------------------------------------------


class GatedGRUMixer(nn.Module):  # "Mamba block but with a GRU as the sequence mixer" ablations (e.g. audio Mamba ports)
    def __init__(self, d_model, expand=2, d_conv=4, eps=1e-6):
        super().__init__()
        self.d_inner = expand * d_model
        self.d_conv = d_conv
        self.norm_eps = eps
        self.norm_weight = nn.Parameter(torch.ones(d_model))
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=False)
        self.conv1d = nn.Conv1d(self.d_inner, self.d_inner, kernel_size=d_conv, groups=self.d_inner,
                                padding=d_conv - 1)
        self.rnn = nn.GRU(self.d_inner, self.d_inner, batch_first=True)
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False)

    def rms_norm(self, x):
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.norm_eps)
        return x * self.norm_weight

    def forward(self, hidden_states):
        L = hidden_states.shape[1]
        residual = hidden_states
        xz = self.in_proj(self.rms_norm(hidden_states))
        x, z = xz.chunk(2, dim=-1)
        x = self.conv1d(x.transpose(1, 2))[..., :L].transpose(1, 2)
        x = F.silu(x)
        y, _ = self.rnn(x)
        y = y * F.silu(z)
        return self.out_proj(y) + residual


class MambaGRUNet(nn.Module):
    def __init__(self, n_in=24, d_model=16, n_layers=2, n_out=10):
        super().__init__()
        self.embed = nn.Linear(n_in, d_model)
        self.layers = nn.ModuleList([GatedGRUMixer(d_model) for _ in range(n_layers)])
        self.norm_f = RMSNorm(d_model, eps=1e-6)
        self.head = nn.Linear(d_model, n_out)

    def forward(self, x):
        x = self.embed(x)
        for layer in self.layers:
            x = layer(x)
        return self.head(self.norm_f(x))


def _mamba_gru_inputs(batch, length):
    gg = gen("mamba_gru_block", batch, length)
    return (randn(gg, batch, length, 24),)


# ---------------------------------------------------------------------------------------------------------------
# 15. User-written cells stepped in Python loops
# ---------------------------------------------------------------------------------------------------------------


class sLSTMCell(nn.Module):  # xLSTM sLSTM cell (exponential gating + stabiliser), community re-implementations
    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.hidden_size = hidden_size
        self.W = nn.Linear(input_size, 4 * hidden_size)
        self.R = nn.Linear(hidden_size, 4 * hidden_size, bias=False)

    def forward(self, x, state):
        h, c, n, m = state
        gates = self.W(x) + self.R(h)
        z, i, f, o = gates.chunk(4, dim=-1)
        z = torch.tanh(z)
        o = torch.sigmoid(o)
        log_f = F.logsigmoid(f)
        m_new = torch.max(log_f + m, i)  # stabiliser state
        i_gate = torch.exp(i - m_new)
        f_gate = torch.exp(log_f + m - m_new)
        c = f_gate * c + i_gate * z
        n = f_gate * n + i_gate
        h = o * (c / n)
        return h, (h, c, n, m_new)


class sLSTMBlock(nn.Module):  # xLSTM post-up-projection block: LN -> sLSTM -> GroupNorm -> gated MLP
    def __init__(self, d_model, n_heads=4):
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.cell = sLSTMCell(d_model, d_model)
        self.group_norm = nn.GroupNorm(n_heads, d_model)
        self.up = nn.Linear(d_model, 2 * (4 * d_model // 3))
        self.down = nn.Linear(4 * d_model // 3, d_model)

    def forward(self, x):
        B, T, D = x.size()
        h = torch.zeros(B, D, device=x.device, dtype=x.dtype)
        state = (h, torch.zeros_like(h), torch.zeros_like(h), torch.zeros_like(h))
        xn = self.norm(x)
        outs = []
        for t in range(x.size(1)):
            out, state = self.cell(xn[:, t, :], state)
            outs.append(out)
        y = torch.stack(outs, dim=1)  # B, T, D
        y = self.group_norm(y.reshape(B * T, D)).view(B, T, D)
        x = x + y
        a, b = self.up(x).chunk(2, dim=-1)
        return x + self.down(F.gelu(a) * b)


class sLSTMStack(nn.Module):
    def __init__(self, n_in=20, d_model=24, n_layers=2, n_out=6):
        super().__init__()
        self.proj_in = nn.Linear(n_in, d_model)
        self.blocks = nn.ModuleList([sLSTMBlock(d_model) for _ in range(n_layers)])
        self.post_norm = nn.LayerNorm(d_model)
        self.proj_out = nn.Linear(d_model, n_out)

    def forward(self, x):
        x = self.proj_in(x)
        for blk in self.blocks:
            x = blk(x)
        return self.proj_out(self.post_norm(x))


def _slstm_inputs(batch, length):
    gg = gen("xlstm_slstm_loop", batch, length)
    return (randn(gg, batch, length, 20),)


class LayerNormLSTMCell(nn.Module):  # pytorch/benchmarks/fastrnns/custom_lstms.py LayerNormLSTMCell
    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.weight_ih = nn.Parameter(torch.randn(4 * hidden_size, input_size) / math.sqrt(input_size))
        self.weight_hh = nn.Parameter(torch.randn(4 * hidden_size, hidden_size) / math.sqrt(hidden_size))
        # The layernorms provide learnable biases
        ln = nn.LayerNorm
        self.layernorm_i = ln(4 * hidden_size)
        self.layernorm_h = ln(4 * hidden_size)
        self.layernorm_c = ln(hidden_size)

    def forward(self, input, state):
        hx, cx = state
        igates = self.layernorm_i(torch.mm(input, self.weight_ih.t()))
        hgates = self.layernorm_h(torch.mm(hx, self.weight_hh.t()))
        gates = igates + hgates
        ingate, forgetgate, cellgate, outgate = gates.chunk(4, 1)

        ingate = torch.sigmoid(ingate)
        forgetgate = torch.sigmoid(forgetgate)
        cellgate = torch.tanh(cellgate)
        outgate = torch.sigmoid(outgate)

        cy = self.layernorm_c((forgetgate * cx) + (ingate * cellgate))
        hy = outgate * torch.tanh(cy)

        return hy, (hy, cy)


class LSTMLayer(nn.Module):  # pytorch/benchmarks/fastrnns/custom_lstms.py LSTMLayer (seq-first, unbind loop)
    def __init__(self, cell, *cell_args):
        super().__init__()
        self.cell = cell(*cell_args)

    def forward(self, input, state):
        inputs = input.unbind(0)
        outputs = []
        for i in range(len(inputs)):
            out, state = self.cell(inputs[i], state)
            outputs += [out]
        return torch.stack(outputs), state


class StackedLNLSTM(nn.Module):  # custom_lstms.py StackedLSTM of LayerNormLSTMCells, zero initial states
    def __init__(self, input_size=16, hidden_size=32, num_layers=2):
        super().__init__()
        self.hidden_size = hidden_size
        layers = [LSTMLayer(LayerNormLSTMCell, input_size, hidden_size)]
        layers += [LSTMLayer(LayerNormLSTMCell, hidden_size, hidden_size) for _ in range(num_layers - 1)]
        self.layers = nn.ModuleList(layers)

    def forward(self, input):
        # input: (seq_len, batch, input_size)
        batch = input.size(1)
        output = input
        h_out, c_out = [], []
        for rnn_layer in self.layers:
            state = (input.new_zeros(batch, self.hidden_size), input.new_zeros(batch, self.hidden_size))
            output, (h, c) = rnn_layer(output, state)
            h_out.append(h)
            c_out.append(c)
        return output, torch.stack(h_out), torch.stack(c_out)


def _lnlstm_inputs(batch, length):
    gg = gen("layernorm_lstm_cell", batch, length)
    return (randn(gg, length, batch, 16),)


# ---------------------------------------------------------------------------------------------------------------
# minGRU (parallel log-space scan with cumsum/logcumsumexp), lucidrains/minGRU-pytorch
# ---------------------------------------------------------------------------------------------------------------


def exists(v):
    return v is not None


def default(v, d):
    return v if exists(v) else d


def g(x):  # appendix B.3
    return torch.where(x >= 0, x + 0.5, x.sigmoid())


def log_g(x):
    return torch.where(x >= 0, (F.relu(x) + 0.5).log(), -F.softplus(-x))


def heinsen_associative_scan_log(log_coeffs, log_values):  # https://github.com/glassroom/heinsen_sequence
    a_star = log_coeffs.cumsum(dim=1)
    log_h0_plus_b_star = (log_values - a_star).logcumsumexp(dim=1)
    log_h = a_star + log_h0_plus_b_star
    return log_h.exp()


class minGRU(nn.Module):  # lucidrains/minGRU-pytorch minGRU
    def __init__(self, dim, expansion_factor=1.0, proj_out=None):
        super().__init__()

        dim_inner = int(dim * expansion_factor)
        proj_out = default(proj_out, expansion_factor != 1.0)

        self.to_hidden_and_gate = nn.Linear(dim, dim_inner * 2, bias=False)
        self.to_out = nn.Linear(dim_inner, dim, bias=False) if proj_out else nn.Identity()

    def forward(self, x, prev_hidden=None, return_next_prev_hidden=False):
        seq_len = x.shape[1]
        hidden, gate = self.to_hidden_and_gate(x).chunk(2, dim=-1)

        if seq_len == 1:
            # handle sequential

            hidden = g(hidden)
            gate = gate.sigmoid()
            out = torch.lerp(prev_hidden, hidden, gate) if exists(prev_hidden) else (hidden * gate)
        else:
            # parallel

            log_coeffs = -F.softplus(gate)

            log_z = -F.softplus(-gate)
            log_tilde_h = log_g(hidden)
            log_values = log_z + log_tilde_h

            if exists(prev_hidden):
                log_values = torch.cat((prev_hidden.log(), log_values), dim=1)
                log_coeffs = F.pad(log_coeffs, (0, 0, 1, 0))

            out = heinsen_associative_scan_log(log_coeffs, log_values)
            out = out[:, -seq_len:]

        next_prev_hidden = out[:, -1:]

        out = self.to_out(out)

        if not return_next_prev_hidden:
            return out

        return out, next_prev_hidden


class MinGRURMSNorm(nn.Module):  # lucidrains-style RMSNorm (F.normalize * sqrt(dim) * (gamma + 1))
    def __init__(self, dim):
        super().__init__()
        self.scale = dim**0.5
        self.gamma = nn.Parameter(torch.zeros(dim))

    def forward(self, x):
        return F.normalize(x, dim=-1) * self.scale * (self.gamma + 1)


class CausalDepthWiseConv1d(nn.Module):  # lucidrains/minGRU-pytorch minLM
    def __init__(self, dim, kernel_size):
        super().__init__()
        self.kernel_size = kernel_size
        self.net = nn.Sequential(
            nn.Conv1d(dim, dim, kernel_size=kernel_size, groups=dim),
            nn.Conv1d(dim, dim, kernel_size=1),
        )

    def forward(self, x):
        x = x.transpose(1, 2)  # b n d -> b d n
        x = F.pad(x, (self.kernel_size - 1, 0), value=0.0)
        x = self.net(x)
        return x.transpose(1, 2)  # b d n -> b n d


def FeedForward(dim, mult=4):
    dim_inner = int(dim * mult)
    return nn.Sequential(nn.Linear(dim, dim_inner), nn.GELU(), nn.Linear(dim_inner, dim))


class minLM(nn.Module):  # lucidrains/minGRU-pytorch minLM (parallel mode only)
    def __init__(self, *, num_tokens=64, dim=24, depth=2, ff_mult=2, expansion=1.5, conv_kernel_size=3):
        super().__init__()
        self.token_emb = nn.Embedding(num_tokens, dim)

        self.layers = nn.ModuleList([])

        for _ in range(depth):
            self.layers.append(
                nn.ModuleList([
                    CausalDepthWiseConv1d(dim, conv_kernel_size),
                    MinGRURMSNorm(dim),
                    minGRU(dim, expansion_factor=expansion),
                    MinGRURMSNorm(dim),
                    FeedForward(dim, mult=ff_mult),
                ])
            )

        self.norm = MinGRURMSNorm(dim)
        self.to_logits = nn.Linear(dim, num_tokens, bias=False)

    def forward(self, x):
        x = self.token_emb(x)

        for conv, norm, mingru, ff_norm, ff in self.layers:
            # conv
            if exists(conv):
                x = conv(x) + x

            # min gru
            x = mingru(norm(x)) + x

            # feedforward
            x = ff(ff_norm(x)) + x

        embed = self.norm(x)
        logits = self.to_logits(embed)
        return logits


def _mingru_inputs(batch, length):
    gg = gen("mingru_lm", batch, length)
    return (torch.randint(0, 64, (batch, length), generator=gg, dtype=torch.int64),)


# ---------------------------------------------------------------------------------------------------------------
# QRNN (salesforce/pytorch-qrnn CPU path) and SRU (taolei87/sru plain-PyTorch path), seq-first
# ---------------------------------------------------------------------------------------------------------------


class ForgetMult(torch.nn.Module):  # salesforce/pytorch-qrnn forget_mult.py CPUForgetMult
    def __init__(self):
        super().__init__()

    def forward(self, f, x, hidden_init=None):
        result = []
        ###
        forgets = f.split(1, dim=0)
        prev_h = hidden_init
        for i, h in enumerate((f * x).split(1, dim=0)):
            if prev_h is not None:
                h = h + (1 - forgets[i]) * prev_h
            # h is (1, batch, hidden) when it needs to be (batch_hidden)
            # Calling squeeze will result in badness if batch size is 1
            h = h.view(h.size()[1:])
            result.append(h)
            prev_h = h
        ###
        return torch.stack(result)


class QRNNLayer(nn.Module):  # salesforce/pytorch-qrnn torchqrnn/qrnn.py
    def __init__(self, input_size, hidden_size=None, save_prev_x=False, zoneout=0, window=1, output_gate=True):
        super().__init__()

        assert window in [1, 2], "This QRNN implementation currently only handles convolutional window of size 1 or 2"
        self.window = window
        self.input_size = input_size
        self.hidden_size = hidden_size if hidden_size else input_size
        self.zoneout = zoneout
        self.save_prev_x = save_prev_x
        self.prevX = None
        self.output_gate = output_gate

        # One large matmul with concat is faster than N small matmuls and no concat
        self.linear = nn.Linear(self.window * self.input_size,
                                3 * self.hidden_size if self.output_gate else 2 * self.hidden_size)

    def reset(self):
        # If you are saving the previous value of x, you should call this when starting with a new state
        self.prevX = None

    def forward(self, X, hidden=None):
        seq_len, batch_size, _ = X.size()

        source = None
        if self.window == 1:
            source = X
        elif self.window == 2:
            # Construct the x_{t-1} tensor with optional x_{-1}, otherwise a zeroed out value for x_{-1}
            Xm1 = []
            Xm1.append(self.prevX if self.prevX is not None else X[:1, :, :] * 0)
            # Note: in case of len(X) == 1, X[:-1, :, :] results in slicing of empty tensor == bad
            if len(X) > 1:
                Xm1.append(X[:-1, :, :])
            Xm1 = torch.cat(Xm1, 0)
            # Convert two (seq_len, batch_size, hidden) tensors to (seq_len, batch_size, 2 * hidden)
            source = torch.cat([X, Xm1], 2)

        # Matrix multiplication for the three outputs: Z, F, O
        Y = self.linear(source)
        # Convert the tensor back to (batch, seq_len, len([Z, F, O]) * hidden_size)
        if self.output_gate:
            Y = Y.view(seq_len, batch_size, 3 * self.hidden_size)
            Z, F, O = Y.chunk(3, dim=2)
        else:
            Y = Y.view(seq_len, batch_size, 2 * self.hidden_size)
            Z, F = Y.chunk(2, dim=2)
        ###
        Z = torch.tanh(Z)
        F = torch.sigmoid(F)

        # If zoneout is specified, we perform dropout on the forget gates in F
        # (training only; in eval mode F is used as is)

        # Ensure the memory is laid out as expected for the CUDA kernel
        # This is a null op if the tensor is already contiguous
        Z = Z.contiguous()
        F = F.contiguous()
        # The O gate doesn't need to be contiguous as it isn't used in the CUDA kernel

        # Forget Mult
        # For testing QRNN without ForgetMult CUDA kernel, C = Z * F may be useful
        C = ForgetMult()(F, Z, hidden)

        # Apply (potentially optional) output gate
        if self.output_gate:
            H = torch.sigmoid(O) * C
        else:
            H = C

        # In an optimal world we may want to backprop to x_{t-1} but ...
        if self.window > 1 and self.save_prev_x:
            self.prevX = X[-1:, :, :].detach()

        return H, C[-1:, :, :]


class QRNN(torch.nn.Module):  # salesforce/pytorch-qrnn torchqrnn/qrnn.py
    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0,
                 bidirectional=False, layers=None, **kwargs):
        assert bidirectional is False, "Bidirectional QRNN is not yet supported"
        assert batch_first is False, "Batch first mode is not yet supported"
        assert bias is True, "Removing underlying bias is not yet supported"

        super().__init__()

        self.layers = torch.nn.ModuleList(
            layers
            if layers
            else [QRNNLayer(input_size if l == 0 else hidden_size, hidden_size, **kwargs) for l in range(num_layers)]
        )

        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = len(layers) if layers else num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = dropout
        self.bidirectional = bidirectional

    def reset(self):
        r"""If your convolutional window is greater than 1, you must reset at the beginning of each new sequence"""
        [layer.reset() for layer in self.layers]

    def forward(self, input, hidden=None):
        next_hidden = []

        for i, layer in enumerate(self.layers):
            input, hn = layer(input, None if hidden is None else hidden[i])
            next_hidden.append(hn)

            if self.dropout != 0 and i < len(self.layers) - 1:
                input = torch.nn.functional.dropout(input, p=self.dropout, training=self.training, inplace=False)

        next_hidden = torch.cat(next_hidden, 0).view(self.num_layers, *next_hidden[0].size()[-2:])

        return input, next_hidden


def _qrnn_inputs(batch, length):
    gg = gen("qrnn_window2", batch, length)
    return (randn(gg, length, batch, 16),)


class SRUCell(nn.Module):  # taolei87/sru SRUCell, pure-PyTorch fallback recurrence (no CUDA kernel)
    def __init__(self, n_in, n_out, dropout=0.0, bidirectional=False, highway_bias=-1.0):
        super().__init__()
        self.n_in = n_in
        self.n_out = n_out
        self.dropout = dropout
        self.bidirectional = bidirectional
        self.num_directions = 2 if bidirectional else 1
        self.highway_bias = highway_bias
        out_size = n_out * 2 if bidirectional else n_out
        k = 4 if n_in != out_size else 3
        self.k = k
        self.size_per_dir = n_out * k
        self.weight = nn.Parameter(torch.Tensor(n_in, self.size_per_dir * self.num_directions))
        self.weight_c = nn.Parameter(torch.Tensor(n_out * 2 * self.num_directions))
        self.bias = nn.Parameter(torch.Tensor(n_out * 2 * self.num_directions))
        self.init_weight()

    def init_weight(self):
        val_range = (3.0 / self.n_in) ** 0.5
        self.weight.data.uniform_(-val_range, val_range)
        self.weight_c.data.uniform_(-0.5, 0.5)
        self.bias.data.zero_()
        bias_val, n_out = self.highway_bias, self.n_out
        self.bias.data.view(2, self.num_directions, n_out)[1].fill_(bias_val)

    def forward(self, input, c0=None):
        assert input.dim() == 2 or input.dim() == 3
        n_in, n_out = self.n_in, self.n_out
        L, batch = input.size(0), input.size(1)
        if c0 is None:
            c0 = input.new_zeros(batch, n_out * self.num_directions)

        x = input
        x_2d = x if x.dim() == 2 else x.contiguous().view(-1, n_in)
        u = x_2d.mm(self.weight)

        nd, k = self.num_directions, self.k
        U = u.view(L, batch, nd, n_out, k)
        x_tilde, f_in, r_in = U[..., 0], U[..., 1], U[..., 2]
        x_prime = U[..., 3] if k == 4 else input.view(L, batch, nd, n_out)

        v_f, v_r = self.weight_c.view(2, nd, n_out)
        b_f, b_r = self.bias.view(2, nd, n_out)
        c0 = c0.view(batch, nd, n_out)

        hs_all, c_last = [], []
        for di in range(nd):
            c_prev = c0[:, di, :]
            hs = []
            time_steps = range(L) if di == 0 else range(L - 1, -1, -1)
            for t in time_steps:
                f_t = torch.sigmoid(f_in[t, :, di] + v_f[di] * c_prev + b_f[di])
                r_t = torch.sigmoid(r_in[t, :, di] + v_r[di] * c_prev + b_r[di])
                c_prev = f_t * c_prev + (1 - f_t) * x_tilde[t, :, di]
                h_t = r_t * c_prev + (1 - r_t) * x_prime[t, :, di]
                hs.append(h_t)
            if di == 1:
                hs = hs[::-1]
            hs_all.append(torch.stack(hs, dim=0))
            c_last.append(c_prev)

        h = torch.cat(hs_all, dim=-1)  # L, batch, nd * n_out
        c = torch.cat(c_last, dim=-1)
        return h, c


class SRU(nn.Module):  # taolei87/sru SRU (stack of SRUCells), seq-first
    def __init__(self, input_size, hidden_size, num_layers=2, dropout=0.0, bidirectional=False):
        super().__init__()
        self.n_in = input_size
        self.n_out = hidden_size
        self.depth = num_layers
        self.rnn_lst = nn.ModuleList()
        self.out_size = hidden_size * 2 if bidirectional else hidden_size
        for i in range(num_layers):
            layer = SRUCell(n_in=self.n_in if i == 0 else self.out_size, n_out=self.n_out, dropout=dropout,
                            bidirectional=bidirectional)
            self.rnn_lst.append(layer)

    def forward(self, input, c0=None):
        assert input.dim() == 3  # (len, batch, n_in)
        if c0 is None:
            zeros = input.new_zeros(input.size(1), self.out_size)
            c0 = [zeros for i in range(self.depth)]
        else:
            assert c0.dim() == 3  # (depth, batch, n_out*dir_)
            c0 = [x.squeeze(0) for x in c0.chunk(self.depth, 0)]

        prevx = input
        lstc = []
        for i, rnn in enumerate(self.rnn_lst):
            h, c = rnn(prevx, c0[i])
            prevx = h
            lstc.append(c)

        return prevx, torch.stack(lstc)


def _sru_inputs(batch, length):
    gg = gen("sru_bidirectional", batch, length)
    return (randn(gg, length, batch, 20),)


# ---------------------------------------------------------------------------------------------------------------
# 19. Activation zoo around an LSTM: masks, sort/unsort, gather last frame
# ---------------------------------------------------------------------------------------------------------------


class ZooEncoder(nn.Module):  # grab-bag emotion-recognition / hobby-ASR encoder with every layer type in the book
    def __init__(self, n_in=24, d=32, n_out=6):
        super().__init__()
        self.inp = nn.Linear(n_in, d)
        self.act0 = nn.ELU()
        self.conv = nn.Conv1d(d, d, kernel_size=5, padding=2)
        self.inorm = nn.InstanceNorm1d(d, affine=True)
        self.act1 = nn.LeakyReLU(0.1)
        self.prelu = nn.PReLU(d)
        self.pool = nn.AvgPool1d(kernel_size=3, stride=1, padding=1, count_include_pad=False)
        self.glu_proj = nn.Linear(d, 2 * d)
        self.act2 = nn.Hardswish()
        self.rnn = nn.LSTM(d, d, batch_first=True)
        self.act3 = nn.Mish()
        self.head = nn.Linear(2 * d, n_out)

    def forward(self, x, lengths):
        B, T, _ = x.shape
        mask = torch.arange(T, device=x.device)[None, :] < lengths[:, None]  # (B, T) True = valid
        x = self.act0(self.inp(x))
        x = x.masked_fill(~mask.unsqueeze(-1), 0.0)

        y = self.conv(x.transpose(1, 2))  # (B, d, T)
        y = self.act1(self.inorm(y))
        y = self.prelu(self.pool(y))
        x = x + y.transpose(1, 2)

        x = F.glu(self.glu_proj(x), dim=-1)
        x = self.act2(x)

        # old habit from before enforce_sorted existed: sort by length, run, unsort
        _, perm_idx = lengths.sort(0, descending=True)
        _, unperm_idx = perm_idx.sort(0)
        out, _ = self.rnn(x.index_select(0, perm_idx))
        out = out.index_select(0, unperm_idx)

        out = self.act3(out)
        out = torch.where(mask.unsqueeze(-1), out, torch.zeros_like(out))

        # last valid frame of every sequence
        idx = (lengths - 1).clamp(min=0).view(-1, 1, 1).expand(-1, 1, out.size(2))
        last = out.gather(1, idx).squeeze(1)
        mean = out.sum(dim=1) / lengths.unsqueeze(1).to(out.dtype)
        return self.head(torch.cat([last, mean], dim=-1)), out


def _zoo_inputs(batch, length):
    gg = gen("activation_zoo", batch, length)
    return randn(gg, batch, length, 24), random_lengths(gg, batch, length)


# ---------------------------------------------------------------------------------------------------------------
# 20. Stacked residual LSTM with BatchNorm1d and an online CMVN (cumsum / rsqrt) front-end
# ---------------------------------------------------------------------------------------------------------------


class OnlineCMVN(nn.Module):  # streaming cepstral mean/variance normalisation (running stats via cumsum)
    def __init__(self, eps=1e-3):
        super().__init__()
        self.eps = eps

    def forward(self, x):
        # x: (B, T, F)
        n = torch.arange(1, x.size(1) + 1, device=x.device, dtype=x.dtype).view(1, -1, 1)
        mean = torch.cumsum(x, dim=1) / n
        var = torch.cumsum(x * x, dim=1) / n - mean.pow(2)
        return (x - mean) * torch.rsqrt(var.clamp(min=0.0) + self.eps)


class ResLSTMLayer(nn.Module):  # GNMT-style residual LSTM layer with BatchNorm1d over features
    def __init__(self, d, dropout=0.1):
        super().__init__()
        self.lstm = nn.LSTM(d, d, batch_first=True)
        self.bn = nn.BatchNorm1d(d)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        out, _ = self.lstm(x)
        out = self.bn(out.transpose(1, 2)).transpose(1, 2)
        return x + self.dropout(out)


class ResidualLSTMStack(nn.Module):  # residual LSTM acoustic model (Kim et al. 2017 "Residual LSTM" flavour)
    def __init__(self, n_in=20, d=32, n_layers=3, n_out=12):
        super().__init__()
        self.cmvn = OnlineCMVN()
        self.proj = nn.Linear(n_in, d)
        self.layers = nn.ModuleList([ResLSTMLayer(d) for _ in range(n_layers)])
        self.out = nn.Linear(d, n_out)

    def forward(self, feats):
        x = self.proj(self.cmvn(feats))
        for layer in self.layers:
            x = layer(x)
        return F.log_softmax(self.out(x), dim=-1)


def _reslstm_inputs(batch, length):
    gg = gen("residual_lstm_cmvn", batch, length)
    return (randn(gg, batch, length, 20) * 2.0 + 1.0,)


ENTRIES = [
    Entry("mamba_minimal_lm", seeded(lambda: Mamba(ModelArgs(d_model=16, n_layer=2, vocab_size=50, d_state=8))),
          _mamba_inputs, ({0: "B", 1: "T"},), "blocks",
          ("embedding", "tied_weights", "rmsnorm_rsqrt", "split", "depthwise_conv1d", "slice_causal", "silu",
           "softplus", "einsum", "einsum_3operand", "python_loop_time", "selective_scan", "stack", "int64_tokens")),
    Entry("mamba_gru_block", seeded(MambaGRUNet), _mamba_gru_inputs, ({0: "B", 1: "T"},), "blocks",
          ("rmsnorm_rsqrt", "chunk", "depthwise_conv1d", "slice_causal", "silu", "gru", "gating", "residual")),
    Entry("xlstm_slstm_loop", seeded(sLSTMStack), _slstm_inputs, ({0: "B", 1: "T"},), "blocks",
          ("user_cell", "python_loop_time", "exp_gating", "logsigmoid", "torch_max", "stack", "layernorm",
           "groupnorm", "gelu", "chunk", "zeros_from_batch")),
    Entry("layernorm_lstm_cell", seeded(StackedLNLSTM), _lnlstm_inputs, ({0: "T", 1: "B"},), "blocks",
          ("user_cell", "unbind_loop", "mm", "layernorm", "sigmoid", "tanh", "chunk", "stack", "seq_first")),
    Entry("mingru_lm", seeded(minLM), _mingru_inputs, ({0: "B", 1: "T"},), "blocks",
          ("embedding", "parallel_scan", "cumsum", "logcumsumexp", "softplus", "where", "log", "exp", "f_pad",
           "depthwise_conv1d", "f_normalize", "seq_len_branch", "modulelist_unpack", "int64_tokens"),
          min_length=2),  # length 1 runs too, but takes the `seq_len == 1` sequential branch
    Entry("qrnn_window2", seeded(lambda: QRNN(16, 32, num_layers=2, window=2, dropout=0.1)), _qrnn_inputs,
          ({0: "T", 1: "B"},), "blocks",
          ("qrnn", "shifted_concat", "len_branch", "split_loop", "enumerate_loop", "sigmoid", "tanh", "stack",
           "seq_first"),
          min_length=2),  # length 1 runs too, but skips the `len(X) > 1` branch
    Entry("sru_bidirectional", seeded(lambda: SRU(20, 16, num_layers=2, bidirectional=True)), _sru_inputs,
          ({0: "T", 1: "B"},), "blocks",
          ("sru", "mm", "python_loop_time", "reverse_loop", "list_reverse", "tensor_unpack", "sigmoid", "stack",
           "seq_first")),
    Entry("activation_zoo", seeded(ZooEncoder), _zoo_inputs, ({0: "B", 1: "T"}, {0: "B"}), "blocks",
          ("elu", "leakyrelu", "hardswish", "mish", "prelu", "glu", "instancenorm1d", "avgpool1d", "conv1d",
           "length_mask", "masked_fill", "where", "sort_unsort", "index_select", "gather_last", "lstm"),
          min_length=2),  # InstanceNorm1d needs more than one frame
    Entry("residual_lstm_cmvn", seeded(ResidualLSTMStack), _reslstm_inputs, ({0: "B", 1: "T"},), "blocks",
          ("cumsum", "rsqrt", "arange_dtype", "clamp", "lstm", "batchnorm1d_transpose", "residual", "log_softmax")),
]
