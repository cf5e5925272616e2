using System;
using Microsoft.EntityFrameworkCore.Migrations;
using UsageBilling.EntityFrameworkCore;

#nullable disable

namespace ExistingApp.Migrations
{
    /// <inheritdoc />
    public partial class UsageBillingMonthlyPartitions : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropIndex(
                name: "ux_usage_events_user_key",
                table: "usage_events");

            migrationBuilder.CreateTable(
                name: "usage_event_keys",
                columns: table => new
                {
                    user_id = table.Column<Guid>(type: "TEXT", nullable: false),
                    idempotency_key = table.Column<string>(type: "TEXT", maxLength: 255, nullable: false),
                    event_id = table.Column<Guid>(type: "TEXT", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("pk_usage_event_keys", x => new { x.user_id, x.idempotency_key });
                    table.ForeignKey(
                        name: "fk_usage_event_keys_user",
                        column: x => x.user_id,
                        principalTable: "accounts",
                        principalColumn: "Id",
                        onDelete: ReferentialAction.Cascade);
                });

            // After the key table exists and the unique index left usage_events: copies the keys; on PostgreSQL
            // rebuilds usage_events partitioned by month.
            migrationBuilder.PartitionUsageEvents();
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.UnpartitionUsageEvents();

            migrationBuilder.DropTable(
                name: "usage_event_keys");

            migrationBuilder.CreateIndex(
                name: "ux_usage_events_user_key",
                table: "usage_events",
                columns: new[] { "user_id", "idempotency_key" },
                unique: true);
        }
    }
}
