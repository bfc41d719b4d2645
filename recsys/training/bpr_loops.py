"""The compiled loop behind :mod:`recsys.training.bpr_kernel` (numba; this module is imported on first use).

Its functions are module-level so that numba's cache (``cache=True``) finds them again in a new process: a
jitted function calling a jitted closure (or an intrinsic made in a closure) gets a new cache key in every
process and is recompiled (3.5 s here).
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

__all__ = ["iteration", "thread_pairs"]

_CHUNK = 128  # pairs drawn and checked before their updates run
_AHEAD = 4  # the rows of the pair this many ahead are prefetched while one trains


@intrinsic
def prefetch(typingctx, table, row, column):
    """Prefetch the cache line of ``table[row, column]`` into every level, to be written (LLVM's ``llvm.prefetch``:
    a hint, never a fault)."""

    def codegen(context, builder, signature, args):
        table_type = signature.args[0]
        array = context.make_array(table_type)(context, builder, args[0])
        pointer = cgutils.get_item_pointer2(
            context, builder, data=array.data, shape=cgutils.unpack_tuple(builder, array.shape),
            strides=cgutils.unpack_tuple(builder, array.strides), layout=table_type.layout, inds=[args[1], args[2]])
        byte, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
        function = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [byte, i32, i32, i32]), "llvm.prefetch.p0i8")
        flags = [ir.Constant(i32, 1), ir.Constant(i32, 3), ir.Constant(i32, 1)]  # write, keep in every level, data
        builder.call(function, [builder.bitcast(pointer, byte), *flags])
        return context.get_dummy_value()

    return types.none(table, row, column), codegen


@numba.njit(fastmath=True, nogil=True, cache=True)
def prefetch_rows(factors, rows, t):  # every cache line of pair t's three rows (16 floats a line)
    for k in range(3):
        for f in range(0, factors.shape[1], 16):
            prefetch(factors, rows[k, t], f)


@numba.njit(fastmath=True, nogil=True, cache=True)
def below(state, n):  # the next xorshift64* state and a draw in [0, n) (multiply-shift of its top 32 bits)
    state ^= state >> np.uint64(12)
    state ^= state << np.uint64(25)
    state ^= state >> np.uint64(27)
    top = (state * np.uint64(0x2545F4914F6CDD1D)) >> np.uint64(32)
    return state, np.int64((top * np.uint64(n)) >> np.uint64(32))


@numba.njit(fastmath=True, nogil=True, cache=True)
def thread_pairs(factors, bias, users, items, indptr, indices, words, num_users, num_items, popularity, lr, reg, state, count):
    """``count`` pairs on one thread from stream ``state``; returns how many were skipped."""
    n = len(users)
    bitmap = len(words) > 0
    dim = factors.shape[1]
    one = np.float32(1.0)
    rows = np.empty((3, _CHUNK), np.int64)  # (user, positive, negative) rows of the chunk's fresh pairs
    skipped = 0
    done = 0
    while done < count:
        drawn = min(_CHUNK, count - done)
        done += drawn
        fresh = 0
        for _ in range(drawn):  # independent iterations: the CPU overlaps their loads
            state, liked = below(state, n)
            user = users[liked]
            if popularity:
                state, other = below(state, n)
                negative = items[other]
            else:
                state, negative = below(state, num_items)
            if bitmap:
                key = user * num_items + negative
                seen = (words[key >> 6] >> np.uint64(key & 63)) & np.uint64(1) == np.uint64(1)
            else:
                lo, hi, end = indptr[user], indptr[user + 1], indptr[user + 1]
                while lo < hi:  # first of the user's sorted items >= negative
                    mid = (lo + hi) >> 1
                    if indices[mid] < negative:
                        lo = mid + 1
                    else:
                        hi = mid
                seen = lo < end and indices[lo] == negative
            rows[0, fresh], rows[1, fresh], rows[2, fresh] = user, num_users + items[liked], num_users + negative
            fresh += 0 if seen else 1  # a seen negative is overwritten by the next draw: skipped, as implicit does
        skipped += drawn - fresh
        for t in range(min(_AHEAD, fresh)):
            prefetch_rows(factors, rows, t)
        for t in range(fresh):  # the updates, in draw order
            if t + _AHEAD < fresh:  # the rows wait on memory while this pair trains
                prefetch_rows(factors, rows, t + _AHEAD)
            user, i, j = rows[0, t], rows[1, t], rows[2, t]
            score = bias[i] - bias[j]
            for f in range(dim):
                score += factors[user, f] * (factors[i, f] - factors[j, f])
            z = one / (one + np.exp(score))  # sigmoid(-(x_ui - x_uj))
            for f in range(dim):
                u, p, q = factors[user, f], factors[i, f], factors[j, f]
                factors[user, f] = u + lr * (z * (p - q) - reg * u)
                factors[i, f] = p + lr * (z * u - reg * p)
                factors[j, f] = q + lr * (-z * u - reg * q)
            bias[i] += lr * (z - reg * bias[i])
            bias[j] += lr * (-z - reg * bias[j])
    return skipped


@numba.njit(parallel=True, nogil=True, cache=True)
def iteration(factors, bias, users, items, indptr, indices, words, num_users, num_items, popularity, lr, reg, states, threads):
    share = (len(users) + threads - 1) // threads
    skipped = np.zeros(threads, np.int64)
    for thread in numba.prange(threads):
        skipped[thread] = thread_pairs(factors, bias, users, items, indptr, indices, words, num_users, num_items,
                                       popularity, lr, reg, states[thread], share)
    return skipped.sum()
