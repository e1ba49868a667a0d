/*
 * daemon.c - going to the background (daemon.h).
 *
 * NOTES ON THE THREAD MODEL
 *   daemon_fork() runs before any thread exists (session and cache threads would not
 *   survive a fork); the parent waits on a pipe until the child has mounted (exit 0)
 *   or failed (exit with the child's status; the child printed the reason).
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "iscsifs/daemon.h"

int daemon_fork(struct config *cfg)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) != 0) {
		perror("iscsifs: pipe");
		exit(1);
	}
	pid_t pid = fork();
	if (pid < 0) {
		perror("iscsifs: fork");
		exit(1);
	}
	if (pid > 0) {
		char ok;
		/* the parent only waits for the verdict: it has no use for the secrets */
		config_wipe_secrets(cfg);
		close(p[1]);
		if (read(p[0], &ok, 1) == 1)
			exit(0);
		int st = 0;
		waitpid(pid, &st, 0);
		exit(WIFEXITED(st) && WEXITSTATUS(st) ? WEXITSTATUS(st) : 1);
	}
	close(p[0]);
	setsid();
	if (chdir("/") != 0) { /* do not pin the caller's directory */
	}
	return p[1];
}
