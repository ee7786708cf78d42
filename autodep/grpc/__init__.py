"""The Open Inference Protocol (KServe V2) over gRPC: `inference.GRPCInferenceService`."""

from autodep.grpc.server import GrpcServer

__all__ = ["GrpcServer"]
