package main

import (
	"io"

	"github.com/urfave/cli/v2"

	"github.com/filering/filering/internal/cmdline"
)

// completionCommand is `filering completion bash|zsh`: it prints a script that makes the
// shell complete filering's commands and flags by asking filering itself, through the
// --generate-bash-completion flag that urfave/cli adds when EnableBashCompletion is set.
func completionCommand() *cli.Command {
	script := func(shell, usage, text string) *cli.Command {
		return &cli.Command{
			Name:  shell,
			Usage: usage,
			Action: func(c *cli.Context) error {
				if c.NArg() != 0 {
					return cmdline.Usagef("completion %s: want no arguments, got %d", shell, c.NArg())
				}
				_, err := io.WriteString(c.App.Writer, text)
				return err
			},
		}
	}
	return &cli.Command{
		Name:      "completion",
		Usage:     "print a shell completion script for bash or zsh",
		ArgsUsage: "bash|zsh",
		Description: "For bash, install the script as /usr/local/share/bash-completion/completions/filering\n" +
			"(with the bash-completion package), or source it from ~/.bashrc:\n" +
			"  filering completion bash > /usr/local/share/bash-completion/completions/filering\n" +
			"For zsh, install it as _filering in a directory on $fpath:\n" +
			"  filering completion zsh > /usr/local/share/zsh/site-functions/_filering",
		HideHelpCommand: true,
		Subcommands: []*cli.Command{
			script("bash", "print the bash completion script", bashCompletion),
			script("zsh", "print the zsh completion script", zshCompletion),
		},
		Action: func(c *cli.Context) error {
			if c.NArg() == 0 {
				return cmdline.Usagef("completion: want a shell: bash or zsh")
			}
			return cmdline.Usagef("completion: no script for shell %q: want bash or zsh", c.Args().First())
		},
	}
}

// bashCompletion completes the words before the cursor by running them, unexpanded but
// for a leading ~/ in the command's name, with --generate-bash-completion appended. When
// filering suggests nothing (a ring directory is expected, say), bash completes file
// names.
const bashCompletion = `# bash completion for filering.
# Install as /usr/local/share/bash-completion/completions/filering (read by the
# bash-completion package), or source it from ~/.bashrc.

_filering() {
    local cur=${COMP_WORDS[COMP_CWORD]}
    local -a words=("${COMP_WORDS[@]:0:COMP_CWORD}")
    if [[ ${words[0]} == "~/"* ]]; then
        words[0]=$HOME/${words[0]#"~/"}
    fi
    if [[ $cur == -- ]]; then
        words+=(-) # "--" would end the flags; "-" asks for all of them
    elif [[ $cur == -* ]]; then
        words+=("$cur")
    fi
    local IFS=$'\n'
    COMPREPLY=($(compgen -W "$("${words[@]}" --generate-bash-completion 2>/dev/null)" -- "$cur"))
}

complete -o bashdefault -o default -F _filering filering
`

// zshCompletion does the same for zsh. filering prints "name:usage" lines for commands
// when the environment variable 0 ends in zsh, which _describe shows as descriptions.
const zshCompletion = `#compdef filering
# zsh completion for filering.
# Install as _filering in a directory on $fpath, such as /usr/local/share/zsh/site-functions.

_filering() {
  local -a opts words_before
  local cur=${words[CURRENT]}
  words_before=("${(@)words[1,CURRENT-1]}")
  if [[ ${words_before[1]} == '~/'* ]]; then
    words_before[1]=$HOME/${words_before[1]#\~/}
  fi
  if [[ $cur == -- ]]; then
    words_before+=(-) # "--" would end the flags; "-" asks for all of them
  elif [[ $cur == -* ]]; then
    words_before+=("$cur")
  fi
  opts=("${(@f)$(env 0=zsh "${(@)words_before}" --generate-bash-completion 2>/dev/null)}")
  if [[ -n ${opts[1]} ]]; then
    _describe 'filering' opts
  else
    _files
  fi
}

if [[ $zsh_eval_context[-1] == loadautofunc ]]; then
  _filering "$@"
else
  compdef _filering filering
fi
`
