"""PyTorch's classic VAE example step (`pytorch/examples`, `vae/main.py`), for comparison only.

The model, loss and optimizer are the example's, line for line: Linear 784-400, 400-20 (twice),
20-400, 400-784, ReLU, a sigmoid decoder with `binary_cross_entropy(..., reduction="sum")`, the
KL term summed, Adam(1e-3), `loss.item()` every step as its training loop does. Eager mode on
the CPU with PyTorch's default threads. PyTorch is not a dependency of genjax: this module is
imported only when `torch` is importable.
"""

from __future__ import annotations


def make_torch_step(batch_size: int = 128, seed: int = 0):
    """`(step, args)`: `step(*args)` is one training step on a fixed batch; returns the loss."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    torch.manual_seed(seed)

    class VAE(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(784, 400)
            self.fc21 = nn.Linear(400, 20)
            self.fc22 = nn.Linear(400, 20)
            self.fc3 = nn.Linear(20, 400)
            self.fc4 = nn.Linear(400, 784)

        def encode(self, x):
            h1 = F.relu(self.fc1(x))
            return self.fc21(h1), self.fc22(h1)

        def reparameterize(self, mu, logvar):
            std = torch.exp(0.5 * logvar)
            eps = torch.randn_like(std)
            return mu + eps * std

        def decode(self, z):
            h3 = F.relu(self.fc3(z))
            return torch.sigmoid(self.fc4(h3))

        def forward(self, x):
            mu, logvar = self.encode(x.view(-1, 784))
            z = self.reparameterize(mu, logvar)
            return self.decode(z), mu, logvar

    def loss_function(recon_x, x, mu, logvar):
        bce = F.binary_cross_entropy(recon_x, x.view(-1, 784), reduction="sum")
        kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
        return bce + kld

    model = VAE()
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    data = torch.rand(batch_size, 1, 28, 28)  # float32 in [0, 1], as ToTensor() gives

    def step(model, optimizer, data):
        optimizer.zero_grad()
        recon_batch, mu, logvar = model(data)
        loss = loss_function(recon_batch, data, mu, logvar)
        loss.backward()
        optimizer.step()
        return loss.item()

    return step, (model, optimizer, data)
