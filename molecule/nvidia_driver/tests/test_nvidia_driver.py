"""nvidia_driver on GPU-less containers: what it does, and that it says what it skipped."""


def test_nouveau_blacklisted(host):
    f = host.file("/etc/modprobe.d/blacklist-nouveau.conf")
    assert f.exists and f.mode == 0o644
    assert "blacklist nouveau" in f.content_string
    assert "options nouveau modeset=0" in f.content_string


def test_no_driver_packages_without_a_gpu(host):
    assert not host.package("nvidia-driver").is_installed
    assert not host.exists("nvidia-smi")
