"""``python -m trainer`` is ``sharpen train``."""
from shared.cli.train import train

if __name__ == "__main__":
    train(prog_name="python -m trainer")
