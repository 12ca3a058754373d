"""nvidia_driver on GPU-less containers: the Debian host without a GPU, and the Ubuntu 24.04 host that went
through the real ubuntu-drivers install path (open kernel modules flavour) with a double sysfs and reboot."""
import pytest

UBUNTU = "mol-gpu-nvidia-smi"
FLAVOUR = "580-server-open"


@pytest.fixture
def name(host):
    return host.backend.get_hostname()


def test_nouveau_blacklisted(host):
    f = host.file("/etc/modprobe.d/blacklist-nouveau.conf")
    assert f.exists and f.mode == 0o644
    assert "blacklist nouveau" in f.content_string
    assert "options nouveau modeset=0" in f.content_string


def test_no_driver_packages_without_a_gpu(host, name):
    if name == UBUNTU:
        pytest.skip("the Ubuntu host installs the driver")
    assert not host.package("nvidia-driver").is_installed
    assert not host.exists("nvidia-smi")


def test_ubuntu_drivers_installed_the_open_server_driver(host, name):
    if name != UBUNTU:
        pytest.skip("Ubuntu host only")
    assert host.system_info.distribution == "ubuntu" and host.system_info.release == "24.04"
    assert host.package("ubuntu-drivers-common").is_installed
    # what `ubuntu-drivers install --gpgpu nvidia:580-server-open` resolves to, plus the role's utilities
    for pkg in (f"nvidia-headless-no-dkms-{FLAVOUR}", "nvidia-utils-580-server", "nvidia-compute-utils-580-server",
                "libnvidia-compute-580-server", f"nvidia-kernel-source-{FLAVOUR}"):
        assert host.package(pkg).is_installed, pkg
    # the proprietary-module flavour was not chosen
    assert not host.package("nvidia-headless-no-dkms-580-server").is_installed
    # the real nvidia-smi binary comes from the package (the role's verification used the double instead)
    assert "nvidia-utils-580-server" in host.check_output("dpkg -S /usr/bin/nvidia-smi")
    assert host.file("/usr/lib/x86_64-linux-gnu/libcuda.so.1").exists


def test_ubuntu_rebooted_once_for_the_new_driver(host, name):
    if name != UBUNTU:
        pytest.skip("Ubuntu host only")
    calls = host.file("/var/lib/fake-reboot/calls")
    assert calls.exists
    # converge rebooted; idempotence, side effects and check mode did not
    assert len(calls.content_string.split()) == 1, calls.content_string
