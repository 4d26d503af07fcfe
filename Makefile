# nvent build. Sources are found by wildcard: a new file in a layer's folder
# needs no edit here. Targets:
#   make            libnvent.a and the nvent binary (build/)
#   make test       unit tests, backend suites (memory, file, redis), e2e
#   make asan       the same under AddressSanitizer + UndefinedBehaviorSanitizer
#   make check      install missing packages, then test and asan (CI)
#   make run        install missing packages, build, run the main job
#   make bench      build the benchmarks (bench/README.md runs them)

B       ?= build
CC      ?= cc
PKGS    := jansson sqlite3 libmicrohttpd hiredis
WARN    := -Wall -Wextra -Werror -Wstrict-prototypes -Wmissing-prototypes \
           -Wvla -Wwrite-strings -Wno-missing-field-initializers
OPT     ?= -O2 -g
SAN     ?=
CFLAGS_ALL = -std=c11 -D_GNU_SOURCE $(OPT) $(SAN) $(WARN) -pthread -MMD -MP \
             -Iinclude -Isrc $(shell pkg-config --cflags $(PKGS))
LIBS_ALL   = $(shell pkg-config --libs $(PKGS)) -pthread -ldl -lm

LIB_SRC   := $(sort $(wildcard src/core/*.c src/sched/*.c src/adapters/*/*.c))
APP_SRC   := $(sort $(wildcard src/host/*.c src/http/*.c src/cli/*.c))
APP_MAIN  := src/cli/main.c
APP_LIB   := $(filter-out $(APP_MAIN),$(APP_SRC))
SUP_SRC   := $(sort $(wildcard tests/support/*.c))
UNIT_SRC  := $(sort $(wildcard tests/unit/*.c tests/unit/*/*.c tests/unit/*/*/*.c))
BACK_SRC  := $(sort $(wildcard tests/backend/*.c))
EX_SRC    := $(sort $(wildcard examples/*.c))
BENCH_SRC := $(sort $(wildcard bench/*.c))

obj = $(patsubst %.c,$(B)/obj/%.o,$(1))

LIB_OBJ  := $(call obj,$(LIB_SRC))
APPL_OBJ := $(call obj,$(APP_LIB))

.PHONY: all test asan check run bench clean unit backend e2e test-bins
NVENT_BIN := $(if $(wildcard $(APP_MAIN)),$(B)/nvent)
all: $(B)/libnvent.a $(NVENT_BIN) $(patsubst examples/%.c,$(B)/examples/%,$(EX_SRC))

$(B)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

$(B)/obj/tests/%.o: CFLAGS_ALL += $(shell pkg-config --cflags criterion) -Itests

$(B)/libnvent.a: $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(B)/libnvent-app.a: $(APPL_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(B)/nvent: $(call obj,$(APP_MAIN)) $(B)/libnvent-app.a $(B)/libnvent.a
	$(CC) $(SAN) -rdynamic -o $@ $^ $(LIBS_ALL)

$(B)/examples/%: $(B)/obj/examples/%.o $(B)/libnvent.a
	@mkdir -p $(dir $@)
	$(CC) $(SAN) -o $@ $^ $(LIBS_ALL)

$(B)/bench/%: $(B)/obj/bench/%.o $(B)/libnvent.a
	@mkdir -p $(dir $@)
	$(CC) $(SAN) -o $@ $^ $(LIBS_ALL)

$(B)/test-unit: $(call obj,$(UNIT_SRC) $(SUP_SRC)) $(B)/libnvent-app.a $(B)/libnvent.a
	$(CC) $(SAN) -rdynamic -o $@ $^ $(LIBS_ALL) $(shell pkg-config --libs criterion)

$(B)/test-backend: $(call obj,$(BACK_SRC) $(SUP_SRC)) $(B)/libnvent.a
	$(CC) $(SAN) -o $@ $^ $(LIBS_ALL) $(shell pkg-config --libs criterion)

# The C side of the differential cron test (tests/cron-diff/).
$(B)/cron-dump: $(B)/obj/tests/cron-diff/cron_dump.o $(B)/libnvent.a
	$(CC) $(SAN) -o $@ $^ $(LIBS_ALL)

bench: $(patsubst bench/%.c,$(B)/bench/%,$(BENCH_SRC))

# The test runner: unit tests once, the backend suites once per adapter,
# then the end-to-end tests against the built binary.
test: all $(B)/test-unit $(B)/test-backend $(B)/cron-dump
	B=$(B) scripts/test.sh

ASAN_OPT := -O1 -g -fno-omit-frame-pointer
ASAN_SAN := -fsanitize=address,undefined -fno-sanitize-recover=undefined

test-bins: $(B)/test-unit $(B)/test-backend $(B)/cron-dump

asan:
	LSAN_OPTIONS=suppressions=$(CURDIR)/scripts/lsan.supp:print_suppressions=0 \
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
	$(MAKE) B=build-asan OPT="$(ASAN_OPT)" SAN="$(ASAN_SAN)" test

# Builds in parallel on every core; the tests themselves set their own
# parallelism (scripts/test.sh).
NPROC := $(shell nproc 2>/dev/null || echo 2)

check:
	scripts/deps.sh
	$(MAKE) -j$(NPROC) all test-bins
	$(MAKE) test
	$(MAKE) -j$(NPROC) B=build-asan OPT="$(ASAN_OPT)" SAN="$(ASAN_SAN)" all test-bins
	$(MAKE) asan

run:
	scripts/deps.sh
	$(MAKE) all
	scripts/run.sh

clean:
	rm -rf build build-asan

-include $(shell find $(B)/obj -name '*.d' 2>/dev/null)
