"""SAM's two-way transformer: prompt tokens and image tokens attend to each other.

Nothing here depends on the image grid size, so it runs unchanged on any Hg×Wg embedding.
Parameter names match the official release.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from basam.modeling.common import MLPBlock


class Attention(nn.Module):
    """Multi-head attention whose q/k/v are projected to embedding_dim // downsample_rate channels.

    q: (B, Nq, C), k and v: (B, Nk, C) -> (B, Nq, C).
    """

    def __init__(self, embedding_dim: int, num_heads: int, downsample_rate: int = 1) -> None:
        super().__init__()
        self.embedding_dim = embedding_dim
        self.internal_dim = embedding_dim // downsample_rate
        self.num_heads = num_heads
        if self.internal_dim % num_heads != 0:
            raise ValueError(
                f"num_heads={num_heads} must divide the internal dim {self.internal_dim} "
                f"(embedding_dim={embedding_dim} // downsample_rate={downsample_rate})"
            )
        self.q_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.k_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.v_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.out_proj = nn.Linear(self.internal_dim, embedding_dim)

    def _split(self, x: Tensor) -> Tensor:
        """(B, N, C') -> (B, heads, N, C'/heads)."""
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def heads(self, which: str, x: Tensor) -> Tensor:
        """x (B, N, C) projected by q_proj, k_proj or v_proj (which = "q" | "k" | "v") and split
        into heads (B, heads, N, C'/heads): what `forward(..., projected=)` takes."""
        return self._split(getattr(self, f"{which}_proj")(x))

    def forward(self, q: Tensor, k: Tensor, v: Tensor, projected: dict[str, Tensor] | None = None) -> Tensor:
        """q: (Bq, Nq, C), k and v: (Bk, Nk, C), where Bq and Bk are equal or one of them is 1 (one
        image shared by B prompt sets: its side is projected once, not once per prompt set).
        projected: {"q": ...} or {"k": ..., "v": ...}, that side already projected (`heads`), for
        an image side reused by several calls; the tensor given for it then only lends its shape."""
        projected = projected or {}
        batch = max(q.shape[0], k.shape[0])
        if k.shape[0] == 1 < batch:
            # Each query row attends on its own, so B sets of queries against one key set are one
            # longer query sequence.
            return self._attend(q.reshape(1, -1, q.shape[-1]), k, v, projected).reshape(batch, q.shape[1], -1)
        return self._attend(q, k, v, projected)

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, projected: dict[str, Tensor]) -> Tensor:
        q = projected["q"] if "q" in projected else self.heads("q", q)
        k = projected["k"] if "k" in projected else self.heads("k", k)
        v = projected["v"] if "v" in projected else self.heads("v", v)
        q = q.expand(k.shape[0], -1, -1, -1)  # shared queries (batch 1) against B key sets
        # The decoder never masks and its token counts are small (a few prompts × Hg·Wg), so the
        # fused kernel with its default 1/sqrt(d) scale is exactly the official computation.
        out = F.scaled_dot_product_attention(q, k, v)
        b, h, n, d = out.shape
        out = out.transpose(1, 2).reshape(b, n, h * d)
        return self.out_proj(out)


class TwoWayAttentionBlock(nn.Module):
    """One decoder layer: token self-attention, token→image cross-attention, token MLP,
    image→token cross-attention. Each sub-layer is residual and followed by a LayerNorm.

    queries: (B, Nq, C), keys: (B, Nk, C), with positional encodings of the same shapes.
    """

    def __init__(
        self,
        embedding_dim: int,
        num_heads: int,
        mlp_dim: int = 2048,
        activation: type[nn.Module] = nn.ReLU,
        attention_downsample_rate: int = 2,
        skip_first_layer_pe: bool = False,
        norm_eps: float = 1e-5,
        mlp_block: type[nn.Module] = MLPBlock,
    ) -> None:
        super().__init__()
        self.self_attn = Attention(embedding_dim, num_heads)
        self.norm1 = nn.LayerNorm(embedding_dim, eps=norm_eps)
        self.cross_attn_token_to_image = Attention(embedding_dim, num_heads, attention_downsample_rate)
        self.norm2 = nn.LayerNorm(embedding_dim, eps=norm_eps)
        self.mlp = mlp_block(embedding_dim, mlp_dim, activation)
        self.norm3 = nn.LayerNorm(embedding_dim, eps=norm_eps)
        self.norm4 = nn.LayerNorm(embedding_dim, eps=norm_eps)
        self.cross_attn_image_to_token = Attention(embedding_dim, num_heads, attention_downsample_rate)
        self.skip_first_layer_pe = skip_first_layer_pe

    def image_side(self, keys: Tensor, key_pe: Tensor) -> dict[str, Tensor]:
        """The image-side projections of this layer's cross-attentions, for keys (1, Nk, C) that
        reach it unchanged whatever the prompts (the first layer's): computed once per image."""
        k = keys + key_pe
        return {
            "k": self.cross_attn_token_to_image.heads("k", k),
            "v": self.cross_attn_token_to_image.heads("v", keys),
            "q": self.cross_attn_image_to_token.heads("q", k),
        }

    def forward(
        self,
        queries: Tensor,
        keys: Tensor,
        query_pe: Tensor,
        key_pe: Tensor,
        image_side: dict[str, Tensor] | None = None,
    ) -> tuple[Tensor, Tensor]:
        """image_side: `image_side(keys, key_pe)` of these very keys, computed beforehand."""
        # In the first layer the queries *are* the prompt embeddings (which already carry their
        # positional encoding), so adding query_pe again and a residual would double-count it.
        if self.skip_first_layer_pe:
            queries = self.self_attn(q=queries, k=queries, v=queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q=q, k=q, v=queries)
        queries = self.norm1(queries)

        q = queries + query_pe
        k = keys if image_side else keys + key_pe  # with image_side, only its shape is read
        kv = {"k": image_side["k"], "v": image_side["v"]} if image_side else None
        queries = self.norm2(queries + self.cross_attn_token_to_image(q=q, k=k, v=keys, projected=kv))

        queries = self.norm3(queries + self.mlp(queries))

        # keys have not changed since the token->image step, so k (keys + key_pe) is reused.
        q = queries + query_pe
        image_q = {"q": image_side["q"]} if image_side else None
        keys = self.norm4(keys + self.cross_attn_image_to_token(q=k, k=q, v=queries, projected=image_q))
        return queries, keys


class TwoWayTransformer(nn.Module):
    """Stack of TwoWayAttentionBlocks plus a final token→image attention.

    forward(image_embedding (1 or B, C, Hg, Wg), image_pe (1 or B, C, Hg, Wg), point_embedding (B, N, C))
      -> (queries (B, N, C), keys (B, Hg·Wg, C)); one image is shared by the B prompt sets.
    """

    def __init__(
        self,
        depth: int,
        embedding_dim: int,
        num_heads: int,
        mlp_dim: int,
        activation: type[nn.Module] = nn.ReLU,
        attention_downsample_rate: int = 2,
        norm_eps: float = 1e-5,
        mlp_block: type[nn.Module] = MLPBlock,
    ) -> None:
        """mlp_block: the token MLP's class, MLPBlock (SAM's lin1/lin2 names) or LayersMLP (SAM 2's)."""
        super().__init__()
        self.depth = depth
        self.embedding_dim = embedding_dim
        self.num_heads = num_heads
        self.mlp_dim = mlp_dim
        self.layers = nn.ModuleList(
            TwoWayAttentionBlock(
                embedding_dim=embedding_dim,
                num_heads=num_heads,
                mlp_dim=mlp_dim,
                activation=activation,
                attention_downsample_rate=attention_downsample_rate,
                skip_first_layer_pe=(i == 0),
                norm_eps=norm_eps,
                mlp_block=mlp_block,
            )
            for i in range(depth)
        )
        self.final_attn_token_to_image = Attention(embedding_dim, num_heads, attention_downsample_rate)
        self.norm_final_attn = nn.LayerNorm(embedding_dim)  # default eps in the official and HF code alike

    def prepare(self, image_embedding: Tensor, image_pe: Tensor) -> dict:
        """The prompt-independent part of `forward` for one image (1, C, Hg, Wg): its tokens and
        the first layer's image-side projections. Pass it as `forward(..., prepared=)` to answer
        many prompt groups on one image without recomputing them."""
        # (B, C, Hg, Wg) -> (B, Hg·Wg, C): row-major token order, which the decoder relies on
        # when it folds the keys back into a map.
        # Made contiguous once here rather than copied again by every projection that reads them.
        keys = image_embedding.flatten(2).transpose(1, 2).contiguous()
        key_pe = image_pe.flatten(2).transpose(1, 2).contiguous()
        first = self.layers[0].image_side(keys, key_pe) if keys.shape[0] == 1 and len(self.layers) else None
        return {"keys": keys, "key_pe": key_pe, "first_layer": first}

    def forward(
        self,
        image_embedding: Tensor | None,
        image_pe: Tensor | None,
        point_embedding: Tensor,
        prepared: dict | None = None,
    ) -> tuple[Tensor, Tensor]:
        """prepared: `prepare(image_embedding, image_pe)`, which then replaces the first two."""
        prepared = prepared or self.prepare(image_embedding, image_pe)
        keys, key_pe = prepared["keys"], prepared["key_pe"]
        queries = point_embedding

        for i, layer in enumerate(self.layers):
            image_side = prepared["first_layer"] if i == 0 else None
            queries, keys = layer(
                queries=queries, keys=keys, query_pe=point_embedding, key_pe=key_pe, image_side=image_side
            )

        q = queries + point_embedding
        k = keys + key_pe
        queries = self.norm_final_attn(queries + self.final_attn_token_to_image(q=q, k=k, v=keys))
        return queries, keys
