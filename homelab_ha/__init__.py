"""homelab_ha: the Home Assistant side of homelab-ai (seed 003).

* ``homelab_ha.bridge``  — Netdata parent -> MQTT, Home Assistant device discovery (``homelab-ha-bridge``).
* ``homelab_ha.vision``  — the two-stage camera vision-notifier sidecar (``homelab-vision-notifier``).

Both talk MQTT through ``homelab_ha.mqttlink`` (paho-mqtt) and read one YAML config file each; secrets (broker
password, router key) come from the environment (a 0600 EnvironmentFile), never from the config or argv.
"""
__version__ = "0.1.0"
