"""The decoder's image side prepared once (as "segment everything" does per crop) gives what the
plain call gives."""

import torch

import basam


def test_prepared_image_side_gives_the_plain_decoder_outputs():
    torch.manual_seed(0)
    model = basam.load_model("tiny").eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.05)
    decoder, c = model.mask_decoder, model.cfg.prompt_embed_dim
    image, pe, dense = (torch.randn(1, c, 8, 6) for _ in range(3))
    sparse = torch.randn(5, 3, c)
    with torch.no_grad():
        prepared = decoder.prepare_image(image, pe, dense)
        plain = decoder.run_transformer(image, pe, sparse, dense)
        reused = [decoder.run_transformer(image, pe, part, dense, prepared=prepared) for part in sparse.split(2)]
    for a, b in zip(plain, (torch.cat(parts) for parts in zip(*reused))):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    assert prepared["first_layer"] is not None
    # One image per prompt set (batch B): nothing image-side is shared, and the call still works.
    batched = decoder.run_transformer(image.expand(5, -1, -1, -1), pe, sparse, dense)
    torch.testing.assert_close(batched[0], plain[0], rtol=0, atol=1e-5)
