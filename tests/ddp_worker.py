"""Run by torchrun in tests/test_distributed.py: trains the tiny model, then every rank writes a
fingerprint of its LoRA weights so the test can check that the replicas agree."""

import hashlib
import os
import sys
from pathlib import Path

from kft.cli import main

if __name__ == "__main__":
    fingerprints = Path(os.environ["KFT_TEST_FINGERPRINTS"])
    import kft.training.job as train_mod

    original = train_mod.TrainingJob._finish

    def finish_and_fingerprint(self, *args, **kwargs):
        h = hashlib.sha256()
        for name, p in sorted(self.loaded.model.named_parameters()):
            if "lora_" in name:
                h.update(name.encode())
                h.update(p.detach().cpu().float().numpy().tobytes())
        (fingerprints / f"rank{os.environ.get('RANK', '0')}.txt").write_text(h.hexdigest())
        return original(self, *args, **kwargs)

    train_mod.TrainingJob._finish = finish_and_fingerprint
    raise SystemExit(main(sys.argv[1:]))
