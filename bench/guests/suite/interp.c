/*
 * interp - a bytecode interpreter: a stack machine with locals, globals, calls and returns, dispatched by a switch
 * in a loop (gcc compiles it to a bounds check and an indirect jump through a table per instruction, as CPython's
 * and Lua's portable builds do). Written for this suite. The programs it runs (assembled below) are recursive
 * Fibonacci (calls and returns), a sieve of Eratosthenes (global array loads and stores) and Collatz sequence
 * lengths (data-dependent branches, division by shifts); each program's result is self-checked against the same
 * computation in C.
 *
 * Work: scale rounds of the three programs (with parameters that change per round).
 */
#include "bench.h"

const struct bench_kernel bench_kernel = { "interp", 10 };

enum op {
    OP_PUSH,  /* imm: push imm */
    OP_LOAD,  /* imm: push local[imm] */
    OP_STORE, /* imm: local[imm] = pop */
    OP_GLOAD, /* push global[pop] */
    OP_GSTORE,/* addr = pop, value = pop: global[addr] = value */
    OP_ADD, OP_SUB, OP_MUL, OP_AND, OP_OR, OP_XOR, OP_SHL, OP_SHR, OP_LT, OP_EQ,
    OP_DUP, OP_DROP, OP_SWAP,
    OP_JMP,   /* imm: pc = imm */
    OP_JZ,    /* imm: if pop == 0, pc = imm */
    OP_JNZ,   /* imm: if pop != 0, pc = imm */
    OP_CALL,  /* imm = target, imm2 = argument count: a new frame whose locals start with the arguments */
    OP_RET,   /* return pop to the caller */
    OP_HALT,  /* stop; the result is pop */
    OP_COUNT
};

#define MAX_CODE 512
#define STACK 4096
#define FRAMES 1024
#define LOCALS 8
#define GLOBALS 65536

static int32_t code[MAX_CODE];
static int ncode;
static int64_t globals[GLOBALS];

static int emit(int32_t v)
{
    if (ncode >= MAX_CODE)
        bench_fail("bytecode buffer full");
    code[ncode] = v;
    return ncode++;
}
static void op0(enum op o) { emit(o); }
static int op1(enum op o, int32_t imm)
{
    emit(o);
    return emit(imm);
}
static void patch(int at, int32_t target) { code[at] = target; }

struct frame {
    int ret_pc;
    int64_t locals[LOCALS];
};

static int64_t run(int entry, const int64_t *args, int nargs)
{
    static int64_t stack[STACK];
    static struct frame frames[FRAMES];
    int sp = 0, fp = 0, pc = entry;
    for (int k = 0; k < nargs; k++)
        frames[0].locals[k] = args[k];
    for (;;) {
        int32_t o = code[pc++];
        switch (o) {
        case OP_PUSH: stack[sp++] = code[pc++]; break;
        case OP_LOAD: stack[sp++] = frames[fp].locals[code[pc++]]; break;
        case OP_STORE: frames[fp].locals[code[pc++]] = stack[--sp]; break;
        case OP_GLOAD: stack[sp - 1] = globals[(uint64_t)stack[sp - 1] % GLOBALS]; break;
        case OP_GSTORE: globals[(uint64_t)stack[sp - 1] % GLOBALS] = stack[sp - 2]; sp -= 2; break;
        case OP_ADD: sp--; stack[sp - 1] += stack[sp]; break;
        case OP_SUB: sp--; stack[sp - 1] -= stack[sp]; break;
        case OP_MUL: sp--; stack[sp - 1] = (int64_t)((uint64_t)stack[sp - 1] * (uint64_t)stack[sp]); break;
        case OP_AND: sp--; stack[sp - 1] &= stack[sp]; break;
        case OP_OR: sp--; stack[sp - 1] |= stack[sp]; break;
        case OP_XOR: sp--; stack[sp - 1] ^= stack[sp]; break;
        case OP_SHL: sp--; stack[sp - 1] = (int64_t)((uint64_t)stack[sp - 1] << (stack[sp] & 63)); break;
        case OP_SHR: sp--; stack[sp - 1] = (int64_t)((uint64_t)stack[sp - 1] >> (stack[sp] & 63)); break;
        case OP_LT: sp--; stack[sp - 1] = stack[sp - 1] < stack[sp]; break;
        case OP_EQ: sp--; stack[sp - 1] = stack[sp - 1] == stack[sp]; break;
        case OP_DUP: stack[sp] = stack[sp - 1]; sp++; break;
        case OP_DROP: sp--; break;
        case OP_SWAP: { int64_t t = stack[sp - 1]; stack[sp - 1] = stack[sp - 2]; stack[sp - 2] = t; break; }
        case OP_JMP: pc = code[pc]; break;
        case OP_JZ: pc = stack[--sp] == 0 ? code[pc] : pc + 1; break;
        case OP_JNZ: pc = stack[--sp] != 0 ? code[pc] : pc + 1; break;
        case OP_CALL: {
            int target = code[pc], n = code[pc + 1];
            if (fp + 1 >= FRAMES)
                bench_fail("bytecode call stack overflow");
            struct frame *f = &frames[++fp];
            f->ret_pc = pc + 2;
            for (int k = n - 1; k >= 0; k--)
                f->locals[k] = stack[--sp];
            pc = target;
            break;
        }
        case OP_RET: {
            int64_t v = stack[sp - 1];
            pc = frames[fp--].ret_pc;
            stack[sp - 1] = v;
            break;
        }
        case OP_HALT: return stack[sp - 1];
        default: bench_fail("bad opcode");
        }
    }
}

static int fib_entry, sieve_entry, collatz_entry;

/*
 * The sieve's two marking loops: while (local[var] < local[0]) { globals[local[var]] = value; local[var] += step },
 * step being the operand of step_op (OP_PUSH: a constant; OP_LOAD: a local). local[var] holds the start already.
 */
static void emit_mark_loop(int var, int32_t value, enum op step_op, int32_t step)
{
    int top = ncode;
    op1(OP_LOAD, var); op1(OP_LOAD, 0); op0(OP_LT);
    int j_done = op1(OP_JZ, 0);
    op1(OP_PUSH, value); op1(OP_LOAD, var); op0(OP_GSTORE);    /* globals[var] = value */
    op1(OP_LOAD, var); op1(step_op, step); op0(OP_ADD); op1(OP_STORE, var);
    op1(OP_JMP, top);
    patch(j_done, ncode);
}

static void assemble(void)
{
    /* fib(n): if n < 2 return n; return fib(n-1) + fib(n-2) */
    int fib = ncode;
    op1(OP_LOAD, 0); op1(OP_PUSH, 2); op0(OP_LT);
    int j_rec = op1(OP_JZ, 0);
    op1(OP_LOAD, 0); op0(OP_RET);
    patch(j_rec, ncode);
    op1(OP_LOAD, 0); op1(OP_PUSH, 1); op0(OP_SUB); op1(OP_CALL, fib); emit(1);
    op1(OP_LOAD, 0); op1(OP_PUSH, 2); op0(OP_SUB); op1(OP_CALL, fib); emit(1);
    op0(OP_ADD); op0(OP_RET);
    fib_entry = ncode;
    op1(OP_LOAD, 0); op1(OP_CALL, fib); emit(1); op0(OP_HALT);

    /* sieve(n): globals[i] = 1 for 2 <= i < n; strike multiples; return the number of primes below n */
    sieve_entry = ncode;
    op1(OP_PUSH, 2); op1(OP_STORE, 1);                        /* i = 2 */
    emit_mark_loop(1, 1, OP_PUSH, 1);                         /* for (; i < n; i++) globals[i] = 1 */
    op1(OP_PUSH, 2); op1(OP_STORE, 1);                        /* i = 2 */
    op1(OP_PUSH, 0); op1(OP_STORE, 3);                        /* count = 0 */
    int outer = ncode;
    op1(OP_LOAD, 1); op1(OP_LOAD, 0); op0(OP_LT);
    int j_outer_done = op1(OP_JZ, 0);
    op1(OP_LOAD, 1); op0(OP_GLOAD);
    int j_not_prime = op1(OP_JZ, 0);
    op1(OP_LOAD, 3); op1(OP_PUSH, 1); op0(OP_ADD); op1(OP_STORE, 3);
    op1(OP_LOAD, 1); op1(OP_LOAD, 1); op0(OP_MUL); op1(OP_STORE, 2); /* j = i * i */
    emit_mark_loop(2, 0, OP_LOAD, 1);                         /* for (; j < n; j += i) globals[j] = 0 */
    patch(j_not_prime, ncode);
    op1(OP_LOAD, 1); op1(OP_PUSH, 1); op0(OP_ADD); op1(OP_STORE, 1);
    op1(OP_JMP, outer);
    patch(j_outer_done, ncode);
    op1(OP_LOAD, 3); op0(OP_HALT);

    /* collatz(lo, hi): sum over lo <= x < hi of the steps x takes to reach 1, xor-folded with the peak value */
    collatz_entry = ncode;
    op1(OP_PUSH, 0); op1(OP_STORE, 4);                        /* acc = 0 */
    int next_x = ncode;
    op1(OP_LOAD, 0); op1(OP_LOAD, 1); op0(OP_LT);
    int j_all_done = op1(OP_JZ, 0);
    op1(OP_LOAD, 0); op1(OP_STORE, 2);                        /* v = x */
    op1(OP_PUSH, 0); op1(OP_STORE, 3);                        /* steps = 0 */
    int step = ncode;
    op1(OP_LOAD, 2); op1(OP_PUSH, 1); op0(OP_EQ);
    int j_reached = op1(OP_JNZ, 0);
    op1(OP_LOAD, 2); op1(OP_PUSH, 1); op0(OP_AND);
    int j_even = op1(OP_JZ, 0);
    op1(OP_LOAD, 2); op1(OP_PUSH, 3); op0(OP_MUL); op1(OP_PUSH, 1); op0(OP_ADD); op1(OP_STORE, 2);
    int j_counted = op1(OP_JMP, 0);
    patch(j_even, ncode);
    op1(OP_LOAD, 2); op1(OP_PUSH, 1); op0(OP_SHR); op1(OP_STORE, 2);
    patch(j_counted, ncode);
    op1(OP_LOAD, 3); op1(OP_PUSH, 1); op0(OP_ADD); op1(OP_STORE, 3);
    op1(OP_JMP, step);
    patch(j_reached, ncode);
    op1(OP_LOAD, 4); op1(OP_PUSH, 5); op0(OP_SHL); op1(OP_LOAD, 3); op0(OP_XOR); op1(OP_LOAD, 0); op0(OP_ADD);
    op1(OP_STORE, 4);                                          /* acc = (acc << 5 ^ steps) + x */
    op1(OP_LOAD, 0); op1(OP_PUSH, 1); op0(OP_ADD); op1(OP_STORE, 0);
    op1(OP_JMP, next_x);
    patch(j_all_done, ncode);
    op1(OP_LOAD, 4); op0(OP_HALT);
}

static int64_t fib_c(int64_t n) { return n < 2 ? n : fib_c(n - 1) + fib_c(n - 2); }

static int64_t sieve_c(int64_t n)
{
    static uint8_t composite[GLOBALS];
    int64_t count = 0;
    for (int64_t i = 0; i < n; i++)
        composite[i] = 0;
    for (int64_t i = 2; i < n; i++)
        if (!composite[i]) {
            count++;
            for (int64_t j = i * i; j < n; j += i)
                composite[j] = 1;
        }
    return count;
}

static int64_t collatz_c(int64_t lo, int64_t hi)
{
    uint64_t acc = 0;
    for (int64_t x = lo; x < hi; x++) {
        uint64_t v = (uint64_t)x, steps = 0;
        while (v != 1) {
            v = (v & 1) ? v * 3 + 1 : v >> 1;
            steps++;
        }
        acc = ((acc << 5) ^ steps) + (uint64_t)x;
    }
    return (int64_t)acc;
}

uint64_t bench_run(uint32_t scale)
{
    assemble();
    uint64_t sum = 0;
    for (uint32_t r = 0; r < scale; r++) {
        int64_t n = 17 + (r % 3);
        int64_t f = run(fib_entry, &n, 1);
        int64_t limit = 20000 + (int64_t)(r % 7) * 1000;
        int64_t primes = run(sieve_entry, &limit, 1);
        int64_t range[2] = { 1 + (int64_t)r * 500, 1 + (int64_t)r * 500 + 500 };
        int64_t c = run(collatz_entry, range, 2);
        if (r < 3 && (f != fib_c(n) || primes != sieve_c(limit) || c != collatz_c(range[0], range[1])))
            bench_fail("a bytecode program's result differs from the same computation in C");
        sum = bench_mix(sum, (uint64_t)f);
        sum = bench_mix(sum, (uint64_t)primes);
        sum = bench_mix(sum, (uint64_t)c);
    }
    return sum;
}
