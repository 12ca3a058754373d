"""The camera vision-notifier sidecar (seed 003): triggers -> de-dup -> stage 1 (fast vision verdict) ->
stage 2 (senior description) or synthetic envelope -> three independent output channels. See notifier.py."""
