"""PyTorch twins of the convolutional train-step families (`dcgan`, `vqvae`, `ddpm_unet`), for comparison only.

Each model has the genjax network's layers, shapes and widths (channels first, as PyTorch runs
them), the same batch, the same optimizer and the same work per step: one update as in the genjax
step, with `loss.item()` at the end of it as a PyTorch training loop logs it. Initialisation and
the values of the inputs do not matter for the timing (random uint8 images, as the JAX rows use).
Eager mode on the CPU. PyTorch is not a dependency of genjax: this module is imported only when
`torch` is importable.

- `dcgan` (`experiments.gan_mnist`, variant "gan"): generator Linear(64, 7*7*2w) - BatchNorm
  (batch statistics) - ReLU - nearest x2 - Conv3x3(w) - BatchNorm - ReLU - nearest x2 -
  Conv3x3(1) - sigmoid; discriminator Conv4x4/2(w) - LeakyReLU(0.2) - Conv4x4/2(2w) - LeakyReLU
  - Linear(feature_dim) - LeakyReLU - Linear(1); one discriminator update (real and fake batches
  through D separately, the fake one detached) then one generator update with fresh z,
  non-saturating loss, BCE from logits, Adam(2e-4, b1=0.5) for both.
- `vqvae` (`experiments.vqvae`, EMA codebook): encoder Conv4x4/2(c0) - ReLU - Conv4x4/2(c1) -
  residual block (x + Conv1x1(ReLU(Conv3x3(ReLU(x))))) - ReLU - Conv1x1(D); nearest code of K
  (straight-through); decoder Conv3x3(c1) - residual block - ReLU - nearest x2 - Conv3x3(c0) -
  ReLU - nearest x2 - Conv3x3(C); loss MSE / data_variance + beta * commitment, Adam(1e-3); then
  the EMA codebook update (decay, Laplace-smoothed counts) and the perplexity.
- `ddpm_unet` (`experiments.ddpm_mnist`): `genjax.nn.UNet` layer for layer (sinusoidal time
  embedding and its MLP, residual blocks GroupNorm - SiLU - Conv3x3 (+ time projection) -
  GroupNorm - SiLU - Conv3x3 with 1x1 skips, stride-2 downsampling, nearest x2 + Conv3x3
  upsampling, concatenated skips, single-head attention at the bottleneck); the simple loss on
  x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, global-norm clipping, Adam, and the EMA of the
  weights (`torch._foreach_lerp_`).
"""

from __future__ import annotations

import math


def _up2(x):
    from torch.nn import functional as F

    return F.interpolate(x, scale_factor=2, mode="nearest")


# ---------------------------------------------------------------------------------------- DCGAN


def make_dcgan_step(batch_size: int = 64, latent_dim: int = 64, width: int = 32, feature_dim: int = 128,
                    kernel_size: int = 3, learning_rate: float = 2e-4, seed: int = 0):
    """`(step, args)`: `step(*args)` is one DCGAN step (a D update, then a G update); returns the G loss."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    torch.manual_seed(seed)
    w, k = width, kernel_size

    class Generator(nn.Module):
        def __init__(self):
            super().__init__()
            self.project = nn.Linear(latent_dim, 7 * 7 * 2 * w)
            self.norm0 = nn.BatchNorm2d(2 * w, track_running_stats=False)
            self.conv1 = nn.Conv2d(2 * w, w, k, padding=k // 2)
            self.norm1 = nn.BatchNorm2d(w, track_running_stats=False)
            self.conv2 = nn.Conv2d(w, 1, k, padding=k // 2)

        def forward(self, z):
            h = F.relu(self.norm0(self.project(z).view(-1, 2 * w, 7, 7)))
            h = F.relu(self.norm1(self.conv1(_up2(h))))
            return torch.sigmoid(self.conv2(_up2(h)))

    class Discriminator(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv0 = nn.Conv2d(1, w, 4, stride=2, padding=1)
            self.conv1 = nn.Conv2d(w, 2 * w, 4, stride=2, padding=1)
            self.dense = nn.Linear(2 * w * 7 * 7, feature_dim)
            self.out = nn.Linear(feature_dim, 1)

        def forward(self, x):
            h = F.leaky_relu(self.conv0(x), 0.2)
            h = F.leaky_relu(self.conv1(h), 0.2)
            h = F.leaky_relu(self.dense(h.flatten(1)), 0.2)
            return self.out(h)[:, 0]

    g, d = Generator(), Discriminator()
    opt_g = torch.optim.Adam(g.parameters(), lr=learning_rate, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=learning_rate, betas=(0.5, 0.999))
    images = torch.randint(0, 256, (batch_size, 1, 28, 28), dtype=torch.uint8)

    def step(g, d, opt_g, opt_d, images):
        real = images.float() / 255.0
        opt_d.zero_grad()
        fake = g(torch.randn(batch_size, latent_dim)).detach()
        real_logits, fake_logits = d(real), d(fake)
        d_loss = (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
                  + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))
        d_loss.backward()
        opt_d.step()
        opt_g.zero_grad()
        fake_logits = d(g(torch.randn(batch_size, latent_dim)))
        g_loss = F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))
        g_loss.backward()
        opt_g.step()
        return g_loss.item()

    return step, (g, d, opt_g, opt_d, images)


# ---------------------------------------------------------------------------------------- VQ-VAE


def make_vqvae_step(batch_size: int = 64, channels=(32, 64), latent_dim: int = 16, num_codes: int = 128,
                    res_hidden: int = 32, beta: float = 0.25, data_variance: float = 0.1,
                    learning_rate: float = 1e-3, decay: float = 0.99, epsilon: float = 1e-5, seed: int = 0):
    """`(step, args)`: one VQ-VAE step with the EMA codebook (gradient step, then the EMA update)."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    torch.manual_seed(seed)
    c0, c1 = channels

    class Residual(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.conv3x3 = nn.Conv2d(c, res_hidden, 3, padding=1)
            self.conv1x1 = nn.Conv2d(res_hidden, c, 1)

        def forward(self, x):
            return x + self.conv1x1(F.relu(self.conv3x3(F.relu(x))))

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.down1 = nn.Conv2d(1, c0, 4, stride=2, padding=1)
            self.down2 = nn.Conv2d(c0, c1, 4, stride=2, padding=1)
            self.res0 = Residual(c1)
            self.to_latent = nn.Conv2d(c1, latent_dim, 1)

        def forward(self, x):
            x = self.res0(self.down2(F.relu(self.down1(x))))
            return self.to_latent(F.relu(x))

    class Decoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.from_latent = nn.Conv2d(latent_dim, c1, 3, padding=1)
            self.res0 = Residual(c1)
            self.up1 = nn.Conv2d(c1, c0, 3, padding=1)
            self.up2 = nn.Conv2d(c0, 1, 3, padding=1)

        def forward(self, z):
            x = F.relu(self.res0(self.from_latent(z)))
            x = F.relu(self.up1(_up2(x)))
            return self.up2(_up2(x))

    enc, dec = Encoder(), Decoder()
    opt = torch.optim.Adam([*enc.parameters(), *dec.parameters()], lr=learning_rate)
    codebook = torch.randn(num_codes, latent_dim)
    ema = {"codebook": codebook, "counts": torch.ones(num_codes), "sums": codebook.clone()}
    images = torch.randint(0, 256, (batch_size, 1, 28, 28), dtype=torch.uint8)

    def step(enc, dec, opt, ema, images):
        x = images.float() / 255.0
        opt.zero_grad()
        book = ema["codebook"]  # [K, D]
        z = enc(x - 0.5)  # [B, D, 7, 7]
        flat = z.permute(0, 2, 3, 1).reshape(-1, latent_dim)  # [N, D]
        dist = (flat.pow(2).sum(1, keepdim=True) - 2 * flat @ book.t() + book.pow(2).sum(1)[None])
        idx = dist.argmin(1)  # [N]
        e = book[idx]
        z_q = flat + (e - flat).detach()  # straight-through
        recon = dec(z_q.view(batch_size, 7, 7, latent_dim).permute(0, 3, 1, 2)) + 0.5
        loss = F.mse_loss(recon, x) / data_variance + beta * F.mse_loss(flat, e.detach())
        loss.backward()
        opt.step()
        with torch.no_grad():  # the EMA codebook (van den Oord et al. 2017, appendix A.1)
            onehot = F.one_hot(idx, num_codes).float()  # [N, K]
            counts = onehot.sum(0)
            ema["counts"].mul_(decay).add_(counts, alpha=1 - decay)
            ema["sums"].mul_(decay).add_(onehot.t() @ flat, alpha=1 - decay)
            n = ema["counts"].sum()
            smoothed = (ema["counts"] + epsilon) / (n + num_codes * epsilon) * n
            ema["codebook"] = ema["sums"] / smoothed[:, None]
            probs = counts / counts.sum()
            perplexity = torch.exp(-(probs * torch.log(probs + 1e-10)).sum())
        return loss.item(), perplexity.item()

    return step, (enc, dec, opt, ema, images)


# ------------------------------------------------------------------------------------- DDPM U-Net


def make_ddpm_unet_step(batch_size: int = 32, channels=(32, 64, 64), num_res_blocks: int = 2, time_dim: int = 32,
                        attention: bool = True, groups: int = 8, num_timesteps: int = 1000,
                        learning_rate: float = 5e-4, grad_clip: float = 1.0, ema_decay: float = 0.999,
                        seed: int = 0):
    """`(step, args)`: one DDPM step of `genjax.nn.UNet`'s twin (loss, clip, Adam, EMA of the weights)."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    torch.manual_seed(seed)
    temb_dim = 4 * time_dim

    def norm(c):
        return nn.GroupNorm(math.gcd(groups, c), c)

    class ResBlock(nn.Module):
        def __init__(self, c_in, c):
            super().__init__()
            self.norm1, self.conv1 = norm(c_in), nn.Conv2d(c_in, c, 3, padding=1)
            self.time = nn.Linear(temb_dim, c)
            self.norm2, self.conv2 = norm(c), nn.Conv2d(c, c, 3, padding=1)
            self.skip = nn.Conv2d(c_in, c, 1) if c_in != c else None

        def forward(self, x, temb):
            h = self.conv1(F.silu(self.norm1(x)))
            h = h + self.time(F.silu(temb))[:, :, None, None]
            h = self.conv2(F.silu(self.norm2(h)))
            return (x if self.skip is None else self.skip(x)) + h

    class Attention(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.norm = norm(c)
            self.q, self.k, self.v, self.out = (nn.Linear(c, c) for _ in range(4))

        def forward(self, x):
            b, c, hgt, wid = x.shape
            h = self.norm(x).flatten(2).transpose(1, 2)  # [B, HW, C]
            q, k, v = self.q(h), self.k(h), self.v(h)
            w = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(c), dim=-1)
            out = self.out(w @ v).transpose(1, 2).reshape(b, c, hgt, wid)
            return x + out

    class UNet(nn.Module):
        def __init__(self):
            super().__init__()
            levels = len(channels)
            self.time1, self.time2 = nn.Linear(time_dim, temb_dim), nn.Linear(temb_dim, temb_dim)
            self.conv_in = nn.Conv2d(1, channels[0], 3, padding=1)
            skips, c = [channels[0]], channels[0]
            self.down = nn.ModuleList()
            for i, ch in enumerate(channels):
                for _ in range(num_res_blocks):
                    self.down.append(ResBlock(c, ch))
                    c = ch
                    skips.append(c)
                if i < levels - 1:
                    self.down.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
                    skips.append(c)
            self.mid1 = ResBlock(c, channels[-1])
            self.mid_attn = Attention(channels[-1]) if attention else None
            self.mid2 = ResBlock(channels[-1], channels[-1])
            c = channels[-1]
            self.up = nn.ModuleList()
            for i in reversed(range(levels)):
                for _ in range(num_res_blocks + 1):
                    self.up.append(ResBlock(c + skips.pop(), channels[i]))
                    c = channels[i]
                if i > 0:
                    self.up.append(nn.Conv2d(c, channels[i - 1], 3, padding=1))
                    c = channels[i - 1]
            self.norm_out, self.conv_out = norm(c), nn.Conv2d(c, 1, 3, padding=1)

        def forward(self, x, t):
            half = time_dim // 2
            freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, dtype=torch.float32) / half)
            args = t.float()[:, None] * freqs[None]
            temb = self.time2(F.silu(self.time1(torch.cat([torch.sin(args), torch.cos(args)], -1))))
            h = self.conv_in(x)
            skips = [h]
            for layer in self.down:
                h = layer(h, temb) if isinstance(layer, ResBlock) else layer(h)
                skips.append(h)
            h = self.mid1(h, temb)
            if self.mid_attn is not None:
                h = self.mid_attn(h)
            h = self.mid2(h, temb)
            for layer in self.up:
                if isinstance(layer, ResBlock):
                    h = layer(torch.cat([h, skips.pop()], 1), temb)
                else:  # nearest x2, then the 3x3 convolution
                    h = layer(_up2(h))
            return self.conv_out(F.silu(self.norm_out(h)))

    model = UNet()
    params = list(model.parameters())
    ema_params = [p.detach().clone() for p in params]
    opt = torch.optim.Adam(params, lr=learning_rate)
    betas = torch.linspace(1e-4, 0.02, num_timesteps, dtype=torch.float64)
    abar = torch.cumprod(1 - betas, 0).float()
    images = torch.randint(0, 256, (batch_size, 1, 28, 28), dtype=torch.uint8)
    state = {"n": 0}

    def step(model, opt, ema_params, images):
        x0 = images.float() / 127.5 - 1.0
        t = torch.randint(0, num_timesteps, (batch_size,))
        noise = torch.randn_like(x0)
        a = abar[t][:, None, None, None]
        x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
        opt.zero_grad()
        loss = F.mse_loss(model(x_t, t), noise)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
        opt.step()
        n = state["n"]
        decay = min(ema_decay, (1 + n) / (10 + n))
        state["n"] = n + 1
        with torch.no_grad():
            torch._foreach_lerp_(ema_params, [p.detach() for p in params], 1 - decay)
        return loss.item()

    return step, (model, opt, ema_params, images)


STEPS = {"dcgan": make_dcgan_step, "vqvae": make_vqvae_step, "ddpm_unet": make_ddpm_unet_step}
