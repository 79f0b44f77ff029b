requests | where error_message contains "\d+"
