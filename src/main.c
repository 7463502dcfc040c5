/*
 * main: command line, signals and wiring.
 *
 * Signals are blocked everywhere (Paho's threads inherit the mask) except
 * inside the loop's epoll_pwait, so the handlers below, which only set
 * flags, always interrupt the one thread that acts on those flags.
 */
#include <sys/resource.h>

#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <MQTTAsync.h>

#include "bridge.h"
#include "config.h"
#include "log.h"
#include "loop.h"
#include "notify.h"

#define SHUTDOWN_FLUSH_MS	5000
#define FDS_RESERVED		64	/* broker, epoll, eventfd, Paho, logs */

/* The command line. */
struct args {
	const char	*file;
	int		 noaction;	/* -n: check the configuration */
	int		 verbose;
	int		 use_syslog;
};

static volatile sig_atomic_t	got_quit;
static volatile sig_atomic_t	got_usr1;
static volatile sig_atomic_t	got_hup;

static void
on_signal(int sig)
{
	if (sig == SIGUSR1)
		got_usr1 = 1;
	else if (sig == SIGHUP)
		got_hup = 1;
	else
		got_quit = sig;
}

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: qmp2mqtt [-nsvV] [-c file]\n"
	    "  -c file     configuration file (default %s)\n"
	    "  -n          check the configuration and exit\n"
	    "  -s          log to syslog (default: stderr)\n"
	    "  -v          more logging (twice: log QMP traffic)\n"
	    "  -V, --version  print the version and exit\n"
	    "  -h, --help  this help\n"
	    "Signals: TERM/INT stop cleanly, USR1 publishes stats now.\n",
	    "/etc/qmp2mqtt/qmp2mqtt.conf");
}

/*
 * Process-wide memory settings, before the first thread and the first
 * MQTT client exist.
 */
static void
memory_init(void)
{
	MQTTAsync_init_options	io = MQTTAsync_init_options_initializer;

	/*
	 * Paho would initialise OpenSSL eagerly (every error string and
	 * algorithm, the OpenSSL configuration file): 1.5 MiB of libcrypto
	 * and libssl pages and 90 KB of heap, even without a TLS broker.
	 * OpenSSL >= 1.1 initialises itself on first use (the first TLS
	 * connection, a takeover key), so nothing is lost by not asking.
	 */
	io.do_openssl_init = 0;
	MQTTAsync_global_init(&io);
	/*
	 * glibc raises its mmap threshold to the size of any large block
	 * freed (up to 32 MiB), and its trim threshold to twice that: after
	 * the start-up of 10 000 VMs, the stats message (1.4 MB, built and
	 * copied every status interval) then came from the heap and left it
	 * 4 MiB larger for good.  A fixed threshold keeps large blocks in
	 * mmap, given back when freed.
	 */
	mallopt(M_MMAP_THRESHOLD, 128 * 1024);
}

/*
 * Raises the fd soft limit to the hard one and sets *vm_limit to how many
 * VMs it leaves room for (SIZE_MAX: unlimited or unknown).  Returns 0, or
 * -1 when the nvms listed ones cannot fit (logged).
 */
static int
fd_limit(size_t nvms, size_t *vm_limit)
{
	struct rlimit	rl;

	*vm_limit = SIZE_MAX;
	if (getrlimit(RLIMIT_NOFILE, &rl) == -1) {
		log_warn("getrlimit");
		return 0;
	}
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) == -1)
			log_warn("setrlimit");
		(void)getrlimit(RLIMIT_NOFILE, &rl);
	}
	if (rl.rlim_cur != RLIM_INFINITY &&
	    (rlim_t)nvms + FDS_RESERVED > rl.rlim_cur) {
		log_warnx("%zu VMs need %zu file descriptors but the limit is "
		    "%llu; raise it (ulimit -n, LimitNOFILE=) or split the VMs "
		    "over several bridges", nvms, nvms + FDS_RESERVED,
		    (unsigned long long)rl.rlim_cur);
		return -1;
	}
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur - FDS_RESERVED <
	    (rlim_t)SIZE_MAX)
		*vm_limit = (size_t)(rl.rlim_cur - FDS_RESERVED);
	return 0;
}

/*
 * SIGHUP: the configuration is read and checked whole; a valid one is
 * applied (bridge_reload), an invalid one is logged and published, and
 * the running one stays.  Returns the configuration in force.
 */
static struct config *
reload(struct bridge *b, struct config *cf, const char *file)
{
	struct config	*ncf;
	char		 err[1024];

	log_info("SIGHUP: reloading %s", file);
	if ((ncf = config_load(file, err, sizeof(err))) == NULL) {
		log_warnx("reload refused, running configuration kept: %s",
		    err);
		bridge_config_error(b, err);
		return cf;
	}
	for (size_t i = 0; i < ncf->nwarnings; i++)
		log_warnx("warning: %s", ncf->warnings[i]);
	if (bridge_reload(b, ncf) == -1) {
		config_free(ncf);
		return cf;
	}
	config_free(cf);
	return ncf;
}

/* The command line.  Returns -1 to go on, or the exit status. */
static int
parse_args(int argc, char *argv[], struct args *a)
{
	static const struct option longopts[] = {
		{ "version", no_argument, NULL, 'V' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	int	ch;

	a->file = "/etc/qmp2mqtt/qmp2mqtt.conf";
	while ((ch = getopt_long(argc, argv, "c:nsvVh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			a->file = optarg;
			break;
		case 'n':
			a->noaction = 1;
			break;
		case 's':
			a->use_syslog = 1;
			break;
		case 'v':
			a->verbose++;
			break;
		case 'V':
			printf("qmp2mqtt %s\n", QMP2MQTT_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 1;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 1;
	}
	return -1;
}

/*
 * The handlers only set flags; the signals stay blocked except while the
 * loop waits (ppoll/epoll_pwait with *waitmask), so a flag set is seen at
 * the next iteration.
 */
static void
signals_init(sigset_t *waitmask)
{
	static const int	 sigs[] = { SIGTERM, SIGINT, SIGUSR1, SIGHUP };
	struct sigaction	 sa;
	sigset_t		 block;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigemptyset(&block);
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
		sigaction(sigs[i], &sa, NULL);
		sigaddset(&block, sigs[i]);
	}
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
	if (sigprocmask(SIG_BLOCK, &block, waitmask) == -1)
		fatal("sigprocmask");
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		sigdelset(waitmask, sigs[i]);
}

/* Runs the bridge until SIGTERM/SIGINT; returns the configuration then in
 * force (a SIGHUP may have replaced cf). */
static struct config *
run(struct loop *loop, struct bridge *b, struct config *cf, const char *file)
{
	while (!got_quit) {
		if (loop_run_once(loop, -1) == -1)
			fatalx("event loop failed");
		if (got_hup) {
			got_hup = 0;
			notify_reloading();
			cf = reload(b, cf, file);
			notify_ready();
		}
		if (got_usr1) {
			got_usr1 = 0;
			bridge_publish_stats(b);
		}
	}
	return cf;
}

int
main(int argc, char *argv[])
{
	struct args	 a = { 0 };
	struct config	*cf;
	struct loop	*loop;
	struct bridge	*b;
	sigset_t	 waitmask;
	char		 err[1024];
	size_t		 vm_limit;
	int		 rv;

	if ((rv = parse_args(argc, argv, &a)) != -1)
		return rv;
	log_init(a.verbose, "qmp2mqtt");
	log_select(a.use_syslog);
	memory_init();

	if ((cf = config_load(a.file, err, sizeof(err))) == NULL) {
		fprintf(stderr, "qmp2mqtt: %s\n", err);
		return 1;
	}
	for (size_t i = 0; i < cf->nwarnings; i++) {
		if (a.noaction)
			fprintf(stderr, "warning: %s\n", cf->warnings[i]);
		else
			log_warnx("warning: %s", cf->warnings[i]);
	}
	if (a.noaction) {
		printf("configuration OK\n");
		config_free(cf);
		return 0;
	}
	if (fd_limit(cf->nvms, &vm_limit) == -1) {
		config_free(cf);
		return 1;
	}

	signals_init(&waitmask);
	if ((loop = loop_new()) == NULL)
		fatalx("cannot create the event loop");
	loop_set_sigmask(loop, &waitmask);
	if ((b = bridge_new(loop, cf, vm_limit)) == NULL || bridge_start(b) == -1)
		fatalx("cannot start the bridge");
	if (notify_watchdog_start(loop) == -1)
		fatalx("cannot start the watchdog timer");
	notify_ready();

	cf = run(loop, b, cf, a.file);
	log_info("signal %d: shutting down", (int)got_quit);
	notify_stopping();
	bridge_shutdown(b, SHUTDOWN_FLUSH_MS);
	notify_watchdog_stop();
	bridge_free(b);
	loop_free(loop);
	config_free(cf);
	log_info("stopped");
	return 0;
}
