"""Decode pool -> features -> metric rows; set features; torchrun sharding."""
