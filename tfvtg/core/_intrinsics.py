"""Compiler intrinsics the numba kernels of core share (LLVM IR emitted
directly where numba has no spelling for it)."""
from __future__ import annotations

from llvmlite import ir
from llvmlite.binding import llvm_version_info
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["widen", "narrow", "prefetch"]


@intrinsic
def widen(typingctx, value):
    """A token value as float32: float16 bits (uint16) are widened exactly
    (LLVM's half -> float extension: one vcvtph2ps per 8 or 16 values with
    F16C), float32 passes through, float64 is rounded."""
    if isinstance(value, types.Integer) and value.bitwidth == 16:
        def codegen(context, builder, sig, args):
            return builder.fpext(builder.bitcast(args[0], ir.HalfType()), ir.FloatType())
    elif value == types.float32:
        def codegen(context, builder, sig, args):
            return args[0]
    elif value == types.float64:
        def codegen(context, builder, sig, args):
            return builder.fptrunc(args[0], ir.FloatType())
    else:
        return None
    return types.float32(value), codegen


@intrinsic
def narrow(typingctx, value):
    """A float32 value as float16 bits (uint16): IEEE round to nearest even,
    overflow to inf, subnormals kept (LLVM's float -> half truncation: one
    vcvtps2ph per 8 or 16 values with F16C), as numpy's float16 cast."""
    if value != types.float32:
        return None

    def codegen(context, builder, sig, args):
        return builder.bitcast(builder.fptrunc(args[0], ir.HalfType()), ir.IntType(16))

    return types.uint16(value), codegen


# LLVM names its prefetch intrinsic after the pointer type: opaque pointers
# from LLVM 15 on
_PREFETCH_NAME = "llvm.prefetch.p0" if llvm_version_info[0] >= 15 else "llvm.prefetch.p0i8"


@intrinsic
def prefetch(typingctx, flat, index):
    """Hint the CPU to fetch the cache line holding ``flat[index]`` (a 1-D
    array) for reading; never faults, changes nothing."""
    if not isinstance(flat, types.Array) or flat.ndim != 1 or not isinstance(index, types.Integer):
        return None

    def codegen(context, builder, sig, args):
        aryty = sig.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [args[1]], wraparound=False)
        byte_ptr = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [byte_ptr, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, _PREFETCH_NAME)
        # read, high temporal locality, data cache
        builder.call(fn, [builder.bitcast(ptr, byte_ptr), ir.Constant(i32, 0), ir.Constant(i32, 3),
                          ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return types.none(flat, index), codegen
