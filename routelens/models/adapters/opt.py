"""OPT: a declared family plus code for its optional projection after the final norm (project_out)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .declare import DeclaredAdapter


class OPTAdapter(DeclaredAdapter):
    """`project_out` (a d_model -> word_embed_proj_dim linear, e.g. opt-350m) sits between the final
    norm and the unembedding: the logit lens and direct effects go through it."""

    def _project_out(self, h: torch.Tensor) -> torch.Tensor:
        proj = self.model.model.decoder.project_out
        return proj(h) if proj is not None else h

    def unembed(self, resid: torch.Tensor, *, apply_norm: bool = True) -> torch.Tensor:
        h = self.final_norm()(resid) if apply_norm else resid
        return self.lm_head()(self._project_out(h))

    def final_norm_linear(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        lin = super().final_norm_linear(y, z)
        proj = self.model.model.decoder.project_out
        return F.linear(lin, proj.weight.float()) if proj is not None else lin
