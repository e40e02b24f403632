"""The signing tests' installation: a demo data directory made by the real `kyso` (its own
PostgreSQL schema when KYSO_TEST_DATABASE_URL is set) with two officials and sample PDFs."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from cli_support import KysoData, Result, new_data_dir
from pdf_samples import make_pdf

REPO_ROOT = Path(__file__).resolve().parents[2]
NHUNG = ("Nguyễn Thị Hồng Nhung", "Ủy ban nhân dân phường Bến Thành", "Chánh Văn phòng")
BINH = ("Trần Văn Bình", "Ủy ban nhân dân phường Bến Thành", "Phó Chủ tịch")


@dataclass
class Official:
    id: int
    serial: str
    pin_file: Path
    name: str


@dataclass
class SigningSite:
    data: KysoData
    root: Path
    officials: dict[str, Official] = field(default_factory=dict)

    @property
    def root_ca_pem(self) -> bytes:
        return (self.data.data_dir / "published" / "ca" / "root.pem").read_bytes()

    @property
    def issuing_ca_pem(self) -> bytes:
        return (self.data.data_dir / "published" / "ca" / "issuing.pem").read_bytes()

    def pdf(self, name: str, pages: int = 1, **kw: object) -> Path:
        path = self.root / "docs" / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(make_pdf(pages, **kw))  # type: ignore[arg-type]
        return path

    def add_official(self, key: str, who: tuple[str, str, str], pin: str,
                     key_spec: str = "ec-p256") -> Official:
        pin_file = self.root / f"{key}.pin"
        pin_file.write_text(pin + "\n")
        out = self.data.run("official", "add", "--name", who[0], "--org", who[1], "--title",
                            who[2], "--email", f"{key}@benthanh.hochiminhcity.gov.vn",
                            "--key-spec", key_spec, "--pin-file", pin_file, "--json").json()
        official = Official(out["official_id"], out["serial"], pin_file, who[0])  # type: ignore[index]
        self.officials[key] = official
        return official

    def sign(self, official: Official, *args: str | Path, expect: int | None = 0) -> Result:
        return self.data.run("sign", *args, "--official", str(official.id), "--pin-file",
                             official.pin_file, expect=expect)

    def python(self, script: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
        """Run a Python snippet against this installation (own process: SoftHSM2 reads its
        token directory once per process)."""
        proc = subprocess.run([sys.executable, "-c", script, *map(str, args)],
                              env=self.data.env, capture_output=True, text=True, timeout=180,
                              cwd=REPO_ROOT)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc


def make_site(root: Path, schema: str) -> SigningSite:
    site = SigningSite(new_data_dir(root, schema), root)
    site.add_official("nhung", NHUNG, "Nhung-pin-2468")
    site.add_official("binh", BINH, "Binh-pin-13579", key_spec="rsa-2048")
    return site
