/*
 * gateway-launch: the few steps between the gateway's spawn and the command.
 *
 *     gateway-launch PARENT_PID UID GID PROGRAM [ARG...]
 *
 * Why a program of our own: Python can only do these steps in a preexec_fn,
 * which forces a fork of the whole gateway (milliseconds), and util-linux's
 * setpriv, a dynamically linked program, costs about 0.8 ms per run.  Built
 * statically by `make` next to the virtualenv's python; gateway/runners/shell.py
 * falls back to setpriv when it is absent.
 *
 * 1. UID and GID given (not "-"): drop supplementary groups, then the group,
 *    then the user (after setuid nothing else could change), and check that
 *    all of real, effective and saved ids changed.
 * 2. PR_SET_PDEATHSIG(SIGKILL): the command dies with the worker thread that
 *    spawned it.  After step 1, because the kernel clears the setting when the
 *    effective ids change; the exec below keeps it (a set-id program would not).
 * 3. If our parent is no longer PARENT_PID, it died before step 2 and nobody
 *    would ever signal us: exit 137.
 * 4. execvp(PROGRAM): PATH is the scrubbed one the gateway gave the child.
 *
 * No shell, no allocation, no environment handling: argv goes through as is.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#define EXIT_SETUP 126
#define EXIT_ORPHANED 137

static long parse_id(const char *text, const char *what) {
    char *end = NULL;
    errno = 0;
    long value = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || value < 0) {
        fprintf(stderr, "gateway-launch: bad %s: %s\n", what, text);
        exit(EXIT_SETUP);
    }
    return value;
}

static int switch_user(uid_t uid, gid_t gid) {
    uid_t ruid, euid, suid;
    gid_t rgid, egid, sgid;
    if (setgroups(0, NULL) != 0 || setresgid(gid, gid, gid) != 0 || setresuid(uid, uid, uid) != 0) {
        return -1;
    }
    if (getresuid(&ruid, &euid, &suid) != 0 || getresgid(&rgid, &egid, &sgid) != 0) {
        return -1;
    }
    return (ruid == uid && euid == uid && suid == uid && rgid == gid && egid == gid && sgid == gid) ? 0 : -1;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fputs("usage: gateway-launch PARENT_PID UID|- GID|- PROGRAM [ARG...]\n", stderr);
        return EXIT_SETUP;
    }
    pid_t parent = (pid_t)parse_id(argv[1], "parent pid");
    if (strcmp(argv[2], "-") != 0 || strcmp(argv[3], "-") != 0) {
        uid_t uid = (uid_t)parse_id(argv[2], "uid");
        gid_t gid = (gid_t)parse_id(argv[3], "gid");
        if (uid == 0 || gid == 0) {
            fputs("gateway-launch: refusing to switch to root\n", stderr);
            return EXIT_SETUP;
        }
        if (switch_user(uid, gid) != 0) {
            perror("gateway-launch: switching to the run-as account");
            return EXIT_SETUP;
        }
    }
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) {
        perror("gateway-launch: prctl");
        return EXIT_SETUP;
    }
    if (getppid() != parent) {
        return EXIT_ORPHANED;
    }
    execvp(argv[4], argv + 4);
    fprintf(stderr, "gateway-launch: %s: %s\n", argv[4], strerror(errno));
    return errno == ENOENT ? 127 : EXIT_SETUP;
}
