echo "report $1: $(cat /valohai/inputs/model/model.txt)"
[ "$3" -gt 0 ] && echo sleeping && sleep "$3"
exit "$2"
