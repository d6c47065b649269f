"""Start a narrower four-convolution student from a wider one: each narrower hidden layer keeps the channels
whose variations move the next layer most on real crops, and the next layer's bias absorbs the mean of those it
drops (so a channel that is constant costs nothing to drop); a bank student with fewer bank filters keeps the
weights of those it still has."""
from __future__ import annotations

import dataclasses

import torch

from shared.nets import FourConvStudent


def prunable(net: FourConvStudent, source: FourConvStudent) -> bool:
    """Whether ``net`` is ``source`` with hidden layers no wider and some of its bank filters, in its order
    (on luma or not: the bank's weights are the same), and not ``source`` itself."""
    a, b = net.spec, source.spec
    same = dataclasses.replace(b, widths=a.widths, bank_luma=a.bank_luma, bank_filters=a.bank_filters) == a
    in_order = [f for f in b.bank_filters if f in a.bank_filters] == list(a.bank_filters)
    return same and in_order and (a.widths, a.bank_filters) != (b.widths, b.bank_filters) and all(
        x <= y for x, y in zip(a.widths, b.widths))


@torch.no_grad()
def hidden_activations(net: FourConvStudent, x: torch.Tensor, hint: torch.Tensor) -> list[torch.Tensor]:
    """The rectified outputs of ``net``'s three hidden layers on a batch ``x`` (N, 3, H, W) told ``hint``."""
    if net.front is not None:
        x = torch.cat([x, net.front(x, net.front_blur(hint), hint[:, 1], hint[:, 2])], dim=1)
    feats = None if net.hint is None else net._features(hint[:, : net.hint_size])
    record: list[torch.Tensor] = []
    net._convolutions(x, feats, record=record)
    return record


@torch.no_grad()
def prune_into(net: FourConvStudent, source: FourConvStudent, crops: torch.Tensor, hints: torch.Tensor) -> dict:
    """Load into ``net`` the weights of ``source`` (``prunable``), keeping in each narrower hidden layer the
    channels whose activation on ``crops`` varies most (its standard deviation) times the norm of the next
    layer's weights on them; the next layer's bias absorbs the dropped ones' means. The last layer keeps the
    outputs of the bank filters ``net`` blends. Returns {layer index: kept channel indices}."""
    if not prunable(net, source):
        raise ValueError(f"cannot prune a {source.spec} into a {net.spec}")
    acts = hidden_activations(source.eval(), crops, hints)
    state = {k: v.clone() for k, v in source.state_dict().items()}
    kept = {}
    for i, width in enumerate(net.spec.widths):
        a, conv, nxt = acts[i], f"body.{2 * i}", f"body.{2 * i + 2}"
        if width == a.shape[1]:
            continue
        w_next = state[f"{nxt}.weight"]                                  # (O, C, k, k)
        score = a.transpose(0, 1).flatten(1).std(dim=1) * w_next.transpose(0, 1).flatten(1).norm(dim=1)
        keep = score.topk(width).indices.sort().values
        drop = torch.ones(a.shape[1], dtype=torch.bool)
        drop[keep] = False
        mean = a.mean(dim=(0, 2, 3))
        state[f"{nxt}.bias"] += (w_next[:, drop].sum(dim=(2, 3)) * mean[drop]).sum(dim=1)
        state[f"{nxt}.weight"] = w_next[:, keep]
        state[f"{conv}.weight"], state[f"{conv}.bias"] = state[f"{conv}.weight"][keep], state[f"{conv}.bias"][keep]
        if f"hint.{i}.weight" in state:
            state[f"hint.{i}.weight"] = state[f"hint.{i}.weight"][keep]
        kept[i] = keep.tolist()
    if net.spec.bank_filters != source.spec.bank_filters:
        # the last layer's outputs, r² per output channel: RGB, one weight per bank filter, the input's weight
        outputs = [0, 1, 2] + [3 + j for j, f in enumerate(source.spec.bank_filters) if f in net.spec.bank_filters]
        outputs.append(3 + len(source.spec.bank_filters))
        r2 = source.spec.unshuffle ** 2
        rows = torch.tensor([c * r2 + k for c in outputs for k in range(r2)])
        last = f"body.{2 * len(net.spec.widths)}"
        state[f"{last}.weight"], state[f"{last}.bias"] = state[f"{last}.weight"][rows], state[f"{last}.bias"][rows]
        kept[len(net.spec.widths)] = rows.tolist()
    net.load_state_dict({k: v.contiguous() for k, v in state.items()})
    return kept
